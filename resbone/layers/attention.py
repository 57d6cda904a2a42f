"""Attention plugins for residual blocks: squeeze-excitation, GCNet's ContextBlock, NonLocal2d, GeneralizedAttention.

Anchors: timm's `SEModule` (layers/squeeze_excite.py: fc1/fc2 1x1 convs with bias, reduced channels
make_divisible(c/16, 8)); IBN-Net's / fast-reid's `SELayer` (Linear form without bias, here also named
fc1/fc2); mmcv's ContextBlock, NonLocal2d and GeneralizedAttention (mmcv/cnn/bricks/*.py), whose
parameter names are kept (`conv_mask`, `channel_add_conv.0`, `g.conv`, `conv_out.conv`, `query_conv`,
`appr_bias`, `gamma`, ...) so mmdet checkpoints load unchanged. Blocks that must start as the identity
(ContextBlock, NonLocal2d) re-apply their zero init in `init_weights()`, which ResNet calls after its
generic Kaiming init. `build_plugin(cfg, in_channels)` is the single entry point (mmdet plugin dicts).

Reference test: tests/layers/test_attention.py (SE vs timm.layers.SEModule with copied weights, the
Linear form, ContextBlock / NonLocal2d / GeneralizedAttention against formulas written out in the test,
identity at init, errors).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from resbone.layers.helpers import make_divisible
from resbone.utils.checks import check_int, is_int

__all__ = ["SqueezeExcitation", "ContextBlock", "NonLocal2d", "GeneralizedAttention", "build_plugin",
           "PLUGIN_TYPES"]


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): x * sigmoid(fc2(relu(fc1(avgpool(x))))).

    form='conv': fc1/fc2 are 1x1 convs with bias (timm, senet/Cadene); form='linear': nn.Linear without
    bias (IBN-Net, fast-reid). Reduced channels: make_divisible(channels * ratio, divisor), where
    `reduction=r` is the senet / IBN-Net spelling of ratio=1/r; divisor defaults to 8 (timm) for the conv
    form and 1 (int(c / r)) for the linear form.
    """

    def __init__(self, channels: int, *, ratio: float | None = None, reduction: int | None = None,
                 divisor: int | None = None, form: str = "conv", bias: bool | None = None) -> None:
        super().__init__()
        if form not in ("conv", "linear"):
            raise ValueError(f"SE form {form!r} is not supported; allowed forms are ['conv', 'linear']")
        if ratio is not None and reduction is not None:
            raise ValueError(f"SE takes ratio={ratio!r} or reduction={reduction!r}, not both")
        if reduction is not None:
            if not is_int(reduction) or reduction < 1:
                raise ValueError(f"SE reduction must be a positive int (16 means channels / 16), got {reduction!r}")
            ratio = 1.0 / reduction
        ratio = 1 / 16 if ratio is None else ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio <= 1:
            raise ValueError(f"SE ratio must be a number in (0, 1], got {ratio!r}")
        divisor = (8 if form == "conv" else 1) if divisor is None else divisor
        check_int("SE divisor", divisor)
        bias = (form == "conv") if bias is None else bias
        self.form = form
        self.rd_channels = make_divisible(channels * ratio, divisor, round_limit=0.0)  # timm's SEModule
        if form == "conv":
            self.fc1 = nn.Conv2d(channels, self.rd_channels, 1, bias=bias)
            self.fc2 = nn.Conv2d(self.rd_channels, channels, 1, bias=bias)
        else:
            self.fc1 = nn.Linear(channels, self.rd_channels, bias=bias)
            self.fc2 = nn.Linear(self.rd_channels, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "conv":
            scale = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        else:
            scale = self.fc2(F.relu(self.fc1(x.mean((2, 3)))))[:, :, None, None]
        return x * torch.sigmoid(scale)


class ContextBlock(nn.Module):
    """GCNet's global context block (Cao et al. 2019): attention pooling + channel add / mul transform."""

    def __init__(self, in_channels: int, *, ratio: float = 1 / 16, pooling_type: str = "att",
                 fusion_types: tuple[str, ...] | list[str] = ("channel_add",)) -> None:
        super().__init__()
        if pooling_type not in ("att", "avg"):
            raise ValueError(f"ContextBlock pooling_type {pooling_type!r} is not supported; allowed: ['att', 'avg']")
        allowed = ("channel_add", "channel_mul")
        if not isinstance(fusion_types, (list, tuple)) or not fusion_types or \
                any(f not in allowed for f in fusion_types):
            raise ValueError(f"ContextBlock fusion_types {fusion_types!r} must be a non-empty list of {list(allowed)}")
        self.in_channels = in_channels
        self.ratio = ratio
        self.planes = int(in_channels * ratio)
        if self.planes < 1:
            raise ValueError(f"ContextBlock ratio={ratio} leaves no channels for in_channels={in_channels}")
        self.pooling_type = pooling_type
        self.fusion_types = tuple(fusion_types)
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.channel_add_conv = self._transform() if "channel_add" in fusion_types else None
        self.channel_mul_conv = self._transform() if "channel_mul" in fusion_types else None
        self.init_weights()

    def _transform(self) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(self.in_channels, self.planes, kernel_size=1),
                             nn.LayerNorm([self.planes, 1, 1]), nn.ReLU(inplace=True),
                             nn.Conv2d(self.planes, self.in_channels, kernel_size=1))

    def init_weights(self) -> None:
        """mmcv's reset_parameters: Kaiming (fan_in) conv_mask, zero last conv of each transform."""
        if self.pooling_type == "att":
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        for transform in (self.channel_add_conv, self.channel_mul_conv):
            if transform is not None:
                nn.init.zeros_(transform[-1].weight)
                nn.init.zeros_(transform[-1].bias)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.pooling_type == "avg":
            return x.mean((2, 3), keepdim=True)
        weights = torch.softmax(self.conv_mask(x).view(n, 1, h * w), dim=2)  # [N, 1, HW]
        return torch.bmm(x.view(n, c, h * w), weights.transpose(1, 2)).view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


class _ConvModule(nn.Module):
    """mmcv ConvModule's parameter layout (`conv`, optional `norm`), so keys read `g.conv.weight`."""

    def __init__(self, in_channels: int, out_channels: int, *, norm_cfg: Any = None, bias: bool | None = None,
                 relu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=(norm_cfg is None) if bias is None else bias)
        if norm_cfg is not None:
            from resbone.layers.norm import build_norm
            self.norm = build_norm(norm_cfg, out_channels)
        else:
            self.norm = None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class _NotScriptable:
    """For the plugins TorchScript cannot compile (modes chosen at construction leave optional submodules, and
    shape-driven einsum / unpacking): torch.jit.script stops with one error naming the plugin, which
    torch.jit.trace, torch.export and ONNX export (resbone.deploy) handle."""

    def __prepare_scriptable__(self) -> nn.Module:  # called by torch.jit.script on every submodule
        raise TypeError(f"{type(self).__name__} (an mmcv-style attention plugin) cannot be compiled by "
                        f"torch.jit.script; trace the model instead (torch.jit.trace, torch.export, or ONNX through "
                        f"resbone.deploy), or build it without this plugin")


class NonLocal2d(_NotScriptable, nn.Module):
    """Non-local block (Wang et al. 2018), mmcv's NonLocal2d: x + conv_out(softmax(theta x . phi x) g x)."""

    MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")

    def __init__(self, in_channels: int, *, reduction: int = 2, use_scale: bool = True, mode: str = "embedded_gaussian",
                 sub_sample: bool = False, norm_cfg: Any = None, zeros_init: bool = True, std: float = 0.01) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"NonLocal2d mode {mode!r} is not supported; allowed modes are {list(self.MODES)}")
        if not isinstance(reduction, int) or reduction < 1 or in_channels // reduction < 1:
            raise ValueError(f"NonLocal2d reduction={reduction!r} must be a positive int <= in_channels={in_channels}")
        self.in_channels = in_channels
        self.inter_channels = in_channels // reduction
        self.use_scale = use_scale
        self.mode = mode
        self.sub_sample = sub_sample
        self.zeros_init = zeros_init
        self.std = std
        self.g = _ConvModule(in_channels, self.inter_channels)
        self.conv_out = _ConvModule(self.inter_channels, in_channels, norm_cfg=norm_cfg)
        if mode != "gaussian":
            self.theta = _ConvModule(in_channels, self.inter_channels)
            self.phi = _ConvModule(in_channels, self.inter_channels)
        if mode == "concatenation":
            self.concat_project = _ConvModule(2 * self.inter_channels, 1, bias=False, relu=True)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(2))
            self.phi = nn.Sequential(self.phi, nn.MaxPool2d(2)) if mode != "gaussian" else nn.MaxPool2d(2)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's init: normal(std) for g/theta/phi, zero conv_out (or its norm), so the block starts as identity."""
        for m in self.modules():
            if isinstance(m, _ConvModule) and m is not self.conv_out and m is not getattr(self, "concat_project", None):
                nn.init.normal_(m.conv.weight, std=self.std)
                if m.conv.bias is not None:
                    nn.init.zeros_(m.conv.bias)
        last = self.conv_out.conv if self.conv_out.norm is None else self.conv_out.norm
        if self.zeros_init:
            nn.init.zeros_(last.weight)
        else:
            nn.init.normal_(last.weight, std=self.std)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g_x = self.g(x).view(n, self.inter_channels, -1).transpose(1, 2)  # [N, HW', C']
        if self.mode == "gaussian":
            theta_x = x.view(n, self.in_channels, -1).transpose(1, 2)
            phi_x = (self.phi(x) if self.sub_sample else x).view(n, self.in_channels, -1)
        else:
            theta_x = self.theta(x).view(n, self.inter_channels, -1).transpose(1, 2)  # [N, HW, C']
            phi_x = self.phi(x).view(n, self.inter_channels, -1)  # [N, C', HW']
        if self.mode == "concatenation":
            hw, hw_kv = theta_x.shape[1], phi_x.shape[2]
            pairs = torch.cat((theta_x.transpose(1, 2)[..., None].expand(-1, -1, -1, hw_kv),
                               phi_x[:, :, None, :].expand(-1, -1, hw, -1)), dim=1)
            pairwise = self.concat_project(pairs).view(n, hw, hw_kv) / hw_kv
        else:
            pairwise = torch.matmul(theta_x, phi_x)
            if self.mode == "dot_product":
                pairwise = pairwise / pairwise.shape[-1]
            else:
                if self.mode == "embedded_gaussian" and self.use_scale:
                    pairwise = pairwise / theta_x.shape[-1] ** 0.5
                pairwise = pairwise.softmax(dim=-1)
        y = torch.matmul(pairwise, g_x).transpose(1, 2).reshape(n, self.inter_channels, *x.shape[2:])
        return x + self.conv_out(y)


class GeneralizedAttention(_NotScriptable, nn.Module):
    """Generalized attention (Zhu et al. 2019, "An empirical study of spatial attention"), mmcv's layout.

    attention_type is four 0/1 flags: query-key content, query-relative position, key content only,
    relative position only. The output is x + gamma * proj(attention @ value) with gamma starting at 0.
    Only spatial_range=-1 (no local constraint) is supported; it is what mmdet's configs use. Every flag
    combination is the plain sum of the paper's terms: equal to mmcv 2.2 for '1111', '1000', '0010', '0001',
    '0011', '1010', '0101' (the released configs use '1111' and '0010'); mmcv's own branch for query-position
    without the geometry bias ('0100', '1100', '0110') transposes the query and fails on non-square maps.
    """

    def __init__(self, in_channels: int, *, spatial_range: int = -1, num_heads: int = 9,
                 position_embedding_dim: int = -1, position_magnitude: int = 1, kv_stride: int = 2,
                 q_stride: int = 1, attention_type: str = "1111") -> None:
        super().__init__()
        if spatial_range != -1:
            raise ValueError(f"GeneralizedAttention spatial_range={spatial_range!r} is not supported; only -1 is")
        if not (isinstance(attention_type, str) and len(attention_type) == 4 and set(attention_type) <= {"0", "1"}
                and "1" in attention_type):
            raise ValueError(f"GeneralizedAttention attention_type {attention_type!r} must be four 0/1 flags "
                             "with at least one 1, e.g. '1111' or '0010'")
        for name, stride in (("kv_stride", kv_stride), ("q_stride", q_stride)):
            # a stride of 0 used to skip the pooling yet multiply the positions by 0 (a silent wrong geometry)
            if not is_int(stride) or stride < 1:
                raise ValueError(f"GeneralizedAttention {name} must be a positive int (1 = no downsampling), "
                                 f"got {stride!r}")
        if num_heads < 1 or in_channels // num_heads < 1:
            raise ValueError(f"GeneralizedAttention num_heads={num_heads!r} must be in 1..in_channels={in_channels}")
        self.in_channels = in_channels
        self.num_heads = num_heads
        self.position_embedding_dim = position_embedding_dim if position_embedding_dim > 0 else in_channels
        self.position_magnitude = position_magnitude
        self.kv_stride = kv_stride
        self.q_stride = q_stride
        self.spatial_range = spatial_range
        self.attention_type = [flag == "1" for flag in attention_type]
        self.qk_embed_dim = in_channels // num_heads
        out_c = self.qk_embed_dim * num_heads
        kinds = self.attention_type
        if kinds[0] or kinds[1]:
            self.query_conv = nn.Conv2d(in_channels, out_c, 1, bias=False)
        if kinds[0] or kinds[2]:
            self.key_conv = nn.Conv2d(in_channels, out_c, 1, bias=False)
        self.v_dim = in_channels // num_heads
        self.value_conv = nn.Conv2d(in_channels, self.v_dim * num_heads, 1, bias=False)
        if kinds[1] or kinds[3]:
            self.appr_geom_fc_x = nn.Linear(self.position_embedding_dim // 2, out_c, bias=False)
            self.appr_geom_fc_y = nn.Linear(self.position_embedding_dim // 2, out_c, bias=False)
        stdv = 1.0 / math.sqrt(self.qk_embed_dim * 2)
        if kinds[2]:
            self.appr_bias = nn.Parameter(-2 * stdv * torch.rand(out_c) + stdv)
        if kinds[3]:
            self.geom_bias = nn.Parameter(-2 * stdv * torch.rand(out_c) + stdv)
        self.proj_conv = nn.Conv2d(self.v_dim * num_heads, in_channels, 1, bias=True)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.q_downsample = nn.AvgPool2d(1, stride=q_stride) if q_stride > 1 else None
        self.kv_downsample = nn.AvgPool2d(1, stride=kv_stride) if kv_stride > 1 else None
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv: Kaiming-uniform (a=1, fan_in) for the projections, zero biases; gamma = 0 (identity at init)."""
        for m in (getattr(self, name, None) for name in ("query_conv", "key_conv", "value_conv", "appr_geom_fc_x",
                                                         "appr_geom_fc_y", "proj_conv")):
            if m is not None:
                nn.init.kaiming_uniform_(m.weight, a=1, mode="fan_in", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.gamma)

    def _position_embedding(self, h: int, w: int, h_kv: int, w_kv: int, x: torch.Tensor,
                            wave_length: float = 1000.0) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(device=x.device, dtype=x.dtype)
        h_diff = (torch.arange(h, **kw) * self.q_stride)[:, None] - (torch.arange(h_kv, **kw) * self.kv_stride)[None]
        w_diff = (torch.arange(w, **kw) * self.q_stride)[:, None] - (torch.arange(w_kv, **kw) * self.kv_stride)[None]
        feat_dim = self.position_embedding_dim
        dim_mat = torch.tensor(wave_length, **kw) ** ((4.0 / feat_dim) * torch.arange(0, feat_dim / 4, **kw))
        h_diff = (h_diff * self.position_magnitude)[..., None] / dim_mat
        w_diff = (w_diff * self.position_magnitude)[..., None] / dim_mat
        return (torch.cat((w_diff.sin(), w_diff.cos()), dim=2), torch.cat((h_diff.sin(), h_diff.cos()), dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads, d = self.num_heads, self.qk_embed_dim
        x_q = self.q_downsample(x) if self.q_downsample is not None else x
        x_kv = self.kv_downsample(x) if self.kv_downsample is not None else x
        n, _, h, w = x_q.shape
        h_kv, w_kv = x_kv.shape[2:]
        kinds = self.attention_type
        # Every term is broadcast to [N, heads, h, w, h_kv, w_kv]; mmcv's (q + bias) . k forms are the sums below.
        energy = x.new_zeros(1, 1, 1, 1, 1, 1)
        if kinds[0] or kinds[1]:
            query = self.query_conv(x_q).view(n, heads, d, h, w).permute(0, 1, 3, 4, 2)  # [N, H, h, w, d]
        if kinds[0] or kinds[2]:
            key = self.key_conv(x_kv).view(n, heads, d, h_kv * w_kv)  # [N, H, d, hw_kv]
        if kinds[0]:
            energy = energy + torch.matmul(query.reshape(n, heads, h * w, d), key).view(n, heads, h, w, h_kv, w_kv)
        if kinds[2]:
            energy = energy + torch.matmul(self.appr_bias.view(1, heads, 1, d), key).view(n, heads, 1, 1, h_kv, w_kv)
        if kinds[1] or kinds[3]:
            embed_x, embed_y = self._position_embedding(h, w, h_kv, w_kv, x)
            pos_x = self.appr_geom_fc_x(embed_x).view(w, w_kv, heads, d).permute(2, 0, 1, 3) / math.sqrt(2)
            pos_y = self.appr_geom_fc_y(embed_y).view(h, h_kv, heads, d).permute(2, 0, 1, 3) / math.sqrt(2)
            # pos_x: [H, w, w_kv, d], pos_y: [H, h, h_kv, d]
            if kinds[1]:
                energy = energy + torch.einsum("nihwd,iwvd->nihwv", query, pos_x)[:, :, :, :, None, :]
                energy = energy + torch.einsum("nihwd,ihud->nihwu", query, pos_y)[:, :, :, :, :, None]
            if kinds[3]:
                geom = self.geom_bias.view(heads, d)
                energy = energy + torch.einsum("id,iwvd->iwv", geom, pos_x)[None, :, None, :, None, :]
                energy = energy + torch.einsum("id,ihud->ihu", geom, pos_y)[None, :, :, None, :, None]
        # Query-independent energy (key content only): one attention row serves every position, as mmcv.
        q_h, q_w = energy.shape[2], energy.shape[3]
        energy = energy.expand(n, heads, q_h, q_w, h_kv, w_kv).reshape(n, heads, q_h * q_w, h_kv * w_kv)
        attention = torch.softmax(energy, dim=3)
        value = self.value_conv(x_kv).view(n, heads, self.v_dim, h_kv * w_kv).transpose(2, 3)
        out = torch.matmul(attention, value).transpose(2, 3).reshape(n, self.v_dim * heads, q_h, q_w)
        out = self.proj_conv(out)
        if self.q_downsample is not None and (q_h, q_w) != (1, 1):
            out = F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.gamma * out + x


PLUGIN_TYPES: dict[str, type[nn.Module]] = {
    "SE": SqueezeExcitation,
    "ContextBlock": ContextBlock,
    "NonLocal2d": NonLocal2d,
    "GeneralizedAttention": GeneralizedAttention,
}


def build_plugin(cfg: Mapping[str, Any], in_channels: int) -> nn.Module:
    """A plugin module from an mmdet plugin cfg, e.g. dict(type='ContextBlock', ratio=1/16)."""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"a plugin cfg must be a dict with a 'type' key, got {cfg!r}")
    kwargs = dict(cfg)
    kind = kwargs.pop("type", None)
    if kind not in PLUGIN_TYPES:
        raise ValueError(f"plugin type {kind!r} is not supported; allowed types are {sorted(PLUGIN_TYPES)}")
    cls = PLUGIN_TYPES[kind]
    allowed = [name for name, p in inspect.signature(cls.__init__).parameters.items()
               if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise KeyError(f"plugin {kind!r} got unknown argument(s) {unknown}; allowed arguments are {allowed}")
    return cls(in_channels, **kwargs)
