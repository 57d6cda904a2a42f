"""resbone's FPN equals torchvision's FeaturePyramidNetwork + LastLevelP6P7 given the same weights,
with P6 from P5 (FCOS's configs, torchvision) and from C5 (MODEL.RETINANET.USE_C5), and keeps FCOS's
parameter names (resbone.convert.maskrcnn: backbone., fpn., head.)."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from resbone.detection.fpn import FPN

IN_CHANNELS = [16, 32, 64]
OUT = 32


def _features(sizes=((20, 24), (10, 12), (5, 6))):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, h, w, generator=g) for c, (h, w) in zip(IN_CHANNELS, sizes)]


def _torchvision_fpn(extra_from_c5: bool) -> FeaturePyramidNetwork:
    torch.manual_seed(0)
    extra = LastLevelP6P7(IN_CHANNELS[-1] if extra_from_c5 else OUT, OUT)
    fpn = FeaturePyramidNetwork(IN_CHANNELS, OUT, extra_blocks=extra).eval()
    with torch.no_grad():  # torchvision zero-inits biases: randomize them so they are checked too
        for p in fpn.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return fpn


def _load_from_torchvision(ours: FPN, tv: FeaturePyramidNetwork) -> None:
    state = {}
    for key, value in tv.state_dict().items():
        key = key.replace(".0.weight", ".weight").replace(".0.bias", ".bias").replace("extra_blocks.", "")
        state[key] = value
    ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize("extra_from_c5", [False, True], ids=["p6_from_p5", "p6_from_c5"])
@pytest.mark.parametrize("sizes", [((20, 24), (10, 12), (5, 6)), ((19, 25), (10, 13), (5, 7))],
                         ids=["even", "odd"])
def test_matches_torchvision_fpn(extra_from_c5, sizes):
    tv = _torchvision_fpn(extra_from_c5)
    ours = FPN(IN_CHANNELS, OUT, extra_from_c5=extra_from_c5).eval()
    _load_from_torchvision(ours, tv)
    features = _features(sizes)
    with torch.no_grad():
        expected = list(tv({str(i): f for i, f in enumerate(features)}).values())
        got = ours(features)
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    assert len(got) == 5
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * float(e.abs().max()))


def test_parameter_names_are_fcos_names():
    names = {k.rsplit(".", 1)[0] for k in FPN([512, 1024, 2048], 256).state_dict()}
    assert names == {"inner_blocks.0", "inner_blocks.1", "inner_blocks.2", "layer_blocks.0", "layer_blocks.1",
                     "layer_blocks.2", "p6", "p7"}
    assert FPN([512, 1024, 2048], 256, extra_from_c5=True).p6.in_channels == 2048
    assert not hasattr(FPN([8, 16, 32], 32, num_extra_levels=0), "p6")


def test_p7_takes_relu_of_p6():
    """FCOS / torchvision: P7 = conv(relu(P6)), not conv(P6)."""
    fpn = FPN(IN_CHANNELS, OUT).eval()
    features = _features()
    with torch.no_grad():
        levels = fpn(features)
        torch.testing.assert_close(levels[4], fpn.p7(torch.relu(levels[3])))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="in_channels"):
        FPN([], 32)
    with pytest.raises(ValueError, match="num_extra_levels"):
        FPN(IN_CHANNELS, OUT, num_extra_levels=3)
    with pytest.raises(ValueError, match="expects 3 feature maps"):
        FPN(IN_CHANNELS, OUT)(_features()[:2])
