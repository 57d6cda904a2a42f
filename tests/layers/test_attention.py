"""resbone.layers.attention: SE against timm's SEModule, plugins against their formulas, identity at init,
plugin placement inside ResNet's Bottleneck, errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resbone.layers.attention import ContextBlock, GeneralizedAttention, NonLocal2d, SqueezeExcitation, build_plugin
from resbone.models.resnet import ResNet

TOL = 1e-5


def _randomize(module: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module


# ---- squeeze-excitation -----------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [64, 72, 200, 256, 2048])
def test_se_conv_form_equals_timm_semodule_with_copied_weights(channels, rng):
    from timm.layers import SEModule

    ref = _randomize(SEModule(channels)).eval()
    ours = build_plugin(dict(type="SE"), channels).eval()
    assert ours.rd_channels == ref.fc1.out_channels  # make_divisible(c / 16, 8), timm's rounding
    ours.load_state_dict(ref.state_dict(), strict=True)  # fc1/fc2 1x1 convs with bias: timm's names
    x = torch.randn(2, channels, 5, 4, generator=rng)
    torch.testing.assert_close(ours(x), ref(x), atol=TOL, rtol=TOL)


def test_se_linear_form_is_avgpool_linear_relu_linear_sigmoid_without_bias(rng):
    se = _randomize(SqueezeExcitation(64, reduction=16, form="linear"))
    assert isinstance(se.fc1, nn.Linear) and se.fc1.bias is None and se.fc1.out_features == 4
    x = torch.randn(2, 64, 6, 5, generator=rng)
    squeeze = x.mean(dim=(2, 3))
    gate = torch.sigmoid(torch.relu(squeeze @ se.fc1.weight.T) @ se.fc2.weight.T)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None], atol=TOL, rtol=TOL)


def test_se_reduction_is_ratio_spelled_as_a_divisor():
    assert SqueezeExcitation(512, reduction=16).rd_channels == SqueezeExcitation(512, ratio=1 / 16).rd_channels == 32
    assert SqueezeExcitation(256, reduction=16, divisor=1).rd_channels == 16  # senet: c // 16


# ---- ContextBlock / NonLocal2d / GeneralizedAttention --------------------------------------------
def _layer_norm_chw(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean = t.mean(dim=(1, 2, 3), keepdim=True)
    var = t.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    return (t - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def test_context_block_equals_gcnet_formula(rng):
    block = _randomize(ContextBlock(32, ratio=1 / 4, fusion_types=("channel_add", "channel_mul")))
    x = torch.randn(2, 32, 6, 7, generator=rng)
    logits = torch.einsum("nchw,c->nhw", x, block.conv_mask.weight.flatten()) + block.conv_mask.bias
    weights = torch.softmax(logits.flatten(1), dim=1).view_as(logits)
    context = torch.einsum("nchw,nhw->nc", x, weights)[:, :, None, None]

    def transform(seq: nn.Sequential) -> torch.Tensor:
        hidden = F.conv2d(context, seq[0].weight, seq[0].bias)
        return F.conv2d(torch.relu(_layer_norm_chw(hidden, seq[1])), seq[3].weight, seq[3].bias)

    expected = x * torch.sigmoid(transform(block.channel_mul_conv)) + transform(block.channel_add_conv)
    torch.testing.assert_close(block(x), expected, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("mode", ["embedded_gaussian", "dot_product"])
def test_non_local_equals_wang_et_al_formula(mode, rng):
    block = _randomize(NonLocal2d(16, reduction=2, mode=mode))
    x = torch.randn(2, 16, 5, 6, generator=rng)

    def proj(m: nn.Module, t: torch.Tensor) -> torch.Tensor:  # [N, HW, C']
        return F.conv2d(t, m.conv.weight, m.conv.bias).flatten(2).transpose(1, 2)

    theta, phi, g = proj(block.theta, x), proj(block.phi, x), proj(block.g, x)
    pairwise = theta @ phi.transpose(1, 2)
    if mode == "embedded_gaussian":
        pairwise = torch.softmax(pairwise / math.sqrt(8), dim=-1)
    else:
        pairwise = pairwise / pairwise.shape[-1]
    y = (pairwise @ g).transpose(1, 2).reshape(2, 8, 5, 6)
    expected = x + F.conv2d(y, block.conv_out.conv.weight, block.conv_out.conv.bias)
    torch.testing.assert_close(block(x), expected, atol=TOL, rtol=TOL)


def _naive_generalized_attention(ga: GeneralizedAttention, x: torch.Tensor) -> torch.Tensor:
    """Zhu et al.'s four terms written per (query, key) pair, kv_stride=1, q_stride=1, position embedding
    sin/cos(diff / 1000^(4k/D)) through the x / y projections, each divided by sqrt(2) (mmcv's scaling)."""
    n, c, h, w = x.shape
    heads, d = ga.num_heads, ga.qk_embed_dim
    q = F.conv2d(x, ga.query_conv.weight).view(n, heads, d, h, w)
    k = F.conv2d(x, ga.key_conv.weight).view(n, heads, d, h, w)
    v = F.conv2d(x, ga.value_conv.weight).view(n, heads, d, h * w)
    dims = ga.position_embedding_dim
    freqs = 1000.0 ** ((4.0 / dims) * torch.arange(dims // 4, dtype=torch.float32))

    def embed(diff: float, fc: nn.Linear) -> torch.Tensor:
        angles = diff / freqs
        return fc(torch.cat((angles.sin(), angles.cos()))).view(heads, d) / math.sqrt(2)

    appr_bias, geom_bias = ga.appr_bias.view(heads, d), ga.geom_bias.view(heads, d)
    energy = torch.zeros(n, heads, h, w, h, w)
    for i in range(h):
        for j in range(w):
            for u in range(h):
                for t in range(w):
                    pos = embed(float(j - t), ga.appr_geom_fc_x) + embed(float(i - u), ga.appr_geom_fc_y)
                    qij, kut = q[:, :, :, i, j], k[:, :, :, u, t]
                    energy[:, :, i, j, u, t] = ((qij * kut).sum(-1) + (qij * pos).sum(-1)
                                                + (appr_bias * kut).sum(-1) + (geom_bias * pos).sum(-1))
    attention = torch.softmax(energy.view(n, heads, h * w, h * w), dim=-1)
    out = (attention @ v.transpose(2, 3)).transpose(2, 3).reshape(n, heads * d, h, w)
    return x + ga.gamma * F.conv2d(out, ga.proj_conv.weight, ga.proj_conv.bias)


def test_generalized_attention_1111_equals_the_four_terms_summed_per_pair(rng):
    ga = _randomize(GeneralizedAttention(16, num_heads=2, kv_stride=1, attention_type="1111"), scale=0.2)
    x = torch.randn(1, 16, 3, 4, generator=rng)
    torch.testing.assert_close(ga(x), _naive_generalized_attention(ga, x), atol=1e-4, rtol=1e-4)


def test_generalized_attention_0010_key_content_only_is_the_same_for_every_query(rng):
    ga = _randomize(GeneralizedAttention(16, num_heads=2, kv_stride=2, attention_type="0010"))
    x = torch.randn(2, 16, 6, 6, generator=rng)
    key = F.conv2d(F.avg_pool2d(x, 1, 2), ga.key_conv.weight).view(2, 2, 8, 9)
    value = F.conv2d(F.avg_pool2d(x, 1, 2), ga.value_conv.weight).view(2, 2, 8, 9)
    weights = torch.softmax(torch.einsum("id,nidk->nik", ga.appr_bias.view(2, 8), key), dim=-1)
    pooled = torch.einsum("nik,nidk->nid", weights, value).reshape(2, 16, 1, 1)
    expected = x + ga.gamma * F.conv2d(pooled, ga.proj_conv.weight, ga.proj_conv.bias)
    torch.testing.assert_close(ga(x), expected, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("cfg", [dict(type="ContextBlock", ratio=1 / 4), dict(type="NonLocal2d"),
                                 dict(type="GeneralizedAttention", num_heads=2, attention_type="1111"),
                                 dict(type="GeneralizedAttention", num_heads=2, attention_type="0010")])
def test_residual_plugins_are_the_identity_after_init_weights(cfg, rng):
    plugin = _randomize(build_plugin(cfg, 32))
    plugin.init_weights()  # what ResNet calls after its Kaiming init
    x = torch.randn(2, 32, 6, 6, generator=rng)
    torch.testing.assert_close(plugin(x), x, atol=TOL, rtol=TOL)


# ---- plugins inside ResNet's Bottleneck ---------------------------------------------------------
def test_two_plugins_at_one_position_both_act_in_order(rng):
    plugins = [dict(cfg=dict(type="ContextBlock", ratio=1 / 4), position="after_conv2"),
               dict(cfg=dict(type="NonLocal2d", reduction=4), position="after_conv2")]
    model = ResNet(50, stage_blocks=(1, 1, 1, 1), plugins=plugins, num_classes=None).eval()
    block = model.layer2[0]
    assert [type(p) for p in block.after_conv2] == [ContextBlock, NonLocal2d]
    for i, p in enumerate(block.after_conv2):
        _randomize(p, seed=i, scale=0.1)
    x = torch.randn(1, 256, 8, 8, generator=rng)
    h = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))
    first, second = block.after_conv2
    both = second(first(h))
    assert (both - first(h)).abs().max() > 1e-3 and (both - second(h)).abs().max() > 1e-3
    expected = block.relu(block.bn3(block.conv3(both)) + block.downsample(x))
    torch.testing.assert_close(block(x), expected, atol=TOL, rtol=TOL)


def test_positions_and_stage_masks_land_where_asked_with_the_block_channels():
    plugins = [dict(cfg=dict(type="ContextBlock", ratio=1 / 16), position="after_conv3",
                    stages=(False, True, True, True)),
               dict(cfg=dict(type="GeneralizedAttention", num_heads=8, attention_type="0010"), position="after_conv2",
                    stages=(False, False, True, True)),
               dict(cfg=dict(type="SE"), position="after_conv1", stages=(True, False, False, False))]
    model = ResNet(50, groups=32, base_width=4, stage_blocks=(2, 1, 1, 1), plugins=plugins, num_classes=None)
    for stage, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        width, out = 128 * 2 ** stage, 256 * 2 ** stage
        for block in layer:
            assert (block.after_conv1 is not None) == (stage == 0)
            assert (block.after_conv2 is not None) == (stage >= 2)
            assert (block.after_conv3 is not None) == (stage >= 1)
            if block.after_conv1 is not None:
                assert block.after_conv1[0].fc1.in_channels == width  # ResNeXt width, not planes
            if block.after_conv2 is not None:
                assert block.after_conv2[0].in_channels == width
            if block.after_conv3 is not None:
                assert block.after_conv3[0].in_channels == out


# ---- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg,error,words", [
    (dict(type="CBAM"), ValueError, ["'CBAM'", "ContextBlock", "NonLocal2d"]),
    (dict(ratio=0.25), ValueError, ["None", "GeneralizedAttention"]),
    (dict(type="ContextBlock", ratio=0.25, radius=3), KeyError, ["radius", "pooling_type"]),
    (dict(type="ContextBlock", pooling_type="max"), ValueError, ["'max'", "att"]),
    (dict(type="ContextBlock", fusion_types=("channel_sub",)), ValueError, ["channel_sub", "channel_add"]),
    (dict(type="NonLocal2d", mode="cosine"), ValueError, ["'cosine'", "embedded_gaussian"]),
    (dict(type="GeneralizedAttention", spatial_range=5), ValueError, ["spatial_range=5", "-1"]),
    (dict(type="GeneralizedAttention", attention_type="0000"), ValueError, ["'0000'", "1111"]),
    (dict(type="SE", form="hard"), ValueError, ["'hard'", "linear"]),
    (dict(type="SE", ratio=0.25, reduction=4), ValueError, ["ratio", "reduction"]),
    (dict(type="SE", reduction=0), ValueError, ["reduction", "0"]),
    (["SE"], TypeError, ["['SE']", "dict"]),
])
def test_bad_plugin_configs_name_the_value_and_the_allowed_ones(cfg, error, words):
    with pytest.raises(error) as info:
        build_plugin(cfg, 64)
    assert all(word in str(info.value) for word in words), str(info.value)


@pytest.mark.parametrize("name,value", [("kv_stride", 0), ("q_stride", 0), ("kv_stride", -2), ("q_stride", 1.5)])
def test_generalized_attention_strides_must_be_positive_ints(name, value):
    # kv_stride=0 used to build: no pooling, but key positions all multiplied by 0 (wrong geometry, silently)
    with pytest.raises(ValueError) as info:
        build_plugin(dict(type="GeneralizedAttention", attention_type="1111", **{name: value}), 64)
    assert name in str(info.value) and repr(value) in str(info.value), str(info.value)
    ok = build_plugin(dict(type="GeneralizedAttention", attention_type="1111", **{name: 1}), 64)
    assert ok(torch.randn(1, 64, 5, 6)).shape == (1, 64, 5, 6)
