"""int8 quantization (resbone.deploy.quantize) against float32 and against torchvision's own quantized
resnet18.

A resnet18 is trained for a few seconds to classify crops of the generated shapes set (square / circle /
triangle, real rendered images): a trained network is what quantization error matters on (random weights
give near-uniform logits, where top-1 means nothing). Its int8 copy must keep top-1 on the validation crops,
stay close to float32 and to torchvision's eager int8 flow given the same float weights and calibration
batches, and survive TorchScript and ONNX (QDQ, run by onnxruntime).
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from resbone.deploy.quantize import (
    DetectorNetwork,
    cpu_int8_features,
    cpu_int8_line,
    default_backend,
    load_quantized,
    qconfig_mapping,
    quantize,
    quantize_detector,
    save_quantized,
)
from resbone.factory import create_model


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


@pytest.mark.slow
def test_trained_resnet18_int8_keeps_top1_and_outputs(trained):
    model, calibration, val_x, val_y = trained
    int8 = quantize(model, calibration)
    with torch.no_grad():
        ref, out = model(val_x), int8(val_x)
    float_acc, int8_acc = _accuracy(ref, val_y), _accuracy(out, val_y)
    print(f"\nshape crops ({len(val_y)}): Acc@1 float32 {float_acc:.3f}, int8 {int8_acc:.3f}; "
          f"top-1 agreement {float((ref.argmax(1) == out.argmax(1)).float().mean()):.3f}; {cpu_int8_line()}")
    assert float_acc > 0.6, "the classifier did not learn: the comparison below would prove nothing"
    assert float((ref.argmax(1) == out.argmax(1)).float().mean()) >= 0.95
    assert abs(int8_acc - float_acc) <= 0.03
    # bound: 8-bit activations over ~20 layers; logits within 5% of their range on every crop
    assert float((ref - out).abs().max()) <= 0.05 * float(ref.max() - ref.min())


def _torchvision_int8(model, calibration):
    """torchvision's own quantized resnet18 (eager flow: fuse_model, prepare, calibrate, convert) with the
    float weights of `model` (resbone's native names are torchvision's) and the same qconfig (x86's, with
    8-bit activations on a VNNI CPU: resbone.deploy.quantize.qconfig_mapping)."""
    from bench.int8 import torchvision_int8

    return torchvision_int8("resnet18", model, calibration, qconfig=qconfig_mapping("x86").global_qconfig,
                            num_classes=3)


@pytest.mark.slow
def test_matches_torchvision_quantized_resnet18(trained):
    model, calibration, val_x, _ = trained
    int8 = quantize(model, calibration, backend="x86")
    reference = _torchvision_int8(model, calibration)
    with torch.no_grad():
        ours, theirs, ref = int8(val_x), reference(val_x), model(val_x)
    span = float(ref.max() - ref.min())
    print(f"\nmax |resbone int8 - torchvision int8| {float((ours - theirs).abs().max()):.4f} "
          f"(logit range {span:.2f})")
    # same weights and observers: the two int8 graphs differ by a rounding step where FX and eager requantize
    # differently (FX observes the fc's input after the flatten, eager before); so the same top-1 wherever the
    # two best int8 logits are more than 2 such steps (the output's quantization step) apart
    step = float(int8.fc.scale)
    top2 = ours.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * step
    print(f"{int(clear.sum())}/{len(clear)} crops with a clear int8 top-1; output step {step:.3f}")
    assert clear.float().mean() > 0.8
    assert torch.equal(ours.argmax(1)[clear], theirs.argmax(1)[clear])
    assert float((ours - theirs).abs().max()) <= 3 * step + 1e-6


@pytest.mark.slow
def test_int8_onnx_qdq_runs_in_onnxruntime(trained, tmp_path):
    import onnx
    import onnxruntime

    model, calibration, val_x, _ = trained
    int8 = quantize(model, calibration)
    path = str(tmp_path / "int8.onnx")
    traced = torch.jit.trace(int8, val_x[:2])
    # the TorchScript exporter writes quantized ops as QuantizeLinear / DequantizeLinear around float ops
    torch.onnx.export(traced, (val_x[:2],), path, dynamo=False, opset_version=17, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = torch.from_numpy(session.run(None, {"x": val_x.numpy()})[0])
    with torch.no_grad():
        ours, ref = int8(val_x), model(val_x)
    print(f"\nonnxruntime QDQ vs torch int8: max diff {float((out - ours).abs().max()):.4f}, top-1 agreement "
          f"{float((out.argmax(1) == ours.argmax(1)).float().mean()):.3f}")
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.95
    assert float((out - ref).abs().max()) <= 0.05 * float(ref.max() - ref.min())


def _batch_statistics(model: torch.nn.Module, batches) -> None:
    """BatchNorm running statistics of `batches` (cumulative average), then eval mode: random weights with
    the activations a trained network's BN keeps at unit scale (untouched, MobileNetV2's fade to ~1e-10)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    model.eval()


@pytest.mark.parametrize("name", ["resnet18d", "resnext50_32x4d", "se_resnet50", "resnet50_ibn_a",
                                  "resnet50_ibn_b", "mobilenet_v2"])
def test_every_family_becomes_int8(name, rng):
    """Every variant quantizes unmodified: all convs int8 (none left float), its feature maps follow the float
    model's (backbones: MobileNetV2's classifier starts at zero, so logits would prove nothing)."""
    model = create_model(name, num_classes=None)
    batches = [torch.randn(4, 3, 32, 32, generator=rng) for _ in range(2)]
    _batch_statistics(model, batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "stays float" note for these
        int8 = quantize(model, batches)
    assert int8.float_parts == []
    convs = [m for m in int8.modules() if type(m).__name__.startswith("Conv") and "quantized" in type(m).__module__]
    assert len(convs) >= len([m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]) // 2
    assert not any(type(m) is torch.nn.Conv2d for m in int8.modules())
    with torch.no_grad():
        ref, out = model(batches[0]), int8(batches[0])
    # random weights amplify any perturbation with depth (layer4 of a random resnet50 keeps a correlation
    # of ~0.3 with itself under int8 noise, a random resnet18 ~0.9); the trained resnet18 above bounds the
    # end-to-end error, here the first two stages must follow
    assert [tuple(o.shape) for o in out] == [tuple(r.shape) for r in ref]
    corr = [float(torch.corrcoef(torch.stack([r.flatten(), o.flatten()]))[0, 1]) for r, o in zip(ref, out)]
    assert corr[0] > 0.97 and corr[1] > 0.8, corr


def test_unquantizable_parts_stay_float_with_one_note(rng):
    model = create_model("resnet50", num_classes=10, dcn=dict(type="DCN", deform_groups=1),
                         stage_with_dcn=(False, False, False, True),
                         plugins=[dict(cfg=dict(type="ContextBlock", ratio=1 / 4), stages=(False, False, False, True),
                                       position="after_conv3")]).eval()
    x = torch.randn(2, 3, 64, 64, generator=rng)
    with pytest.warns(UserWarning, match="stay float") as record:
        int8 = quantize(model, [x])
    notes = [str(w.message) for w in record if "stay float" in str(w.message)]
    assert len(notes) == 1
    assert "DeformConv2dPack x3: layer4.0.conv2, layer4.1.conv2, layer4.2.conv2" in notes[0]
    assert "ContextBlock x3: layer4.0.after_conv3.0" in notes[0]
    assert len(int8.float_parts) == 6 and "layer4.2.after_conv3.0 (ContextBlock)" in int8.float_parts
    with torch.no_grad():
        ref, out = model(x), int8(x)
    assert torch.corrcoef(torch.stack([ref.flatten(), out.flatten()]))[0, 1] > 0.9


def test_backbone_features_and_save_load_round_trip(tmp_path, rng):
    model = create_model("resnet18", num_classes=None).eval()
    batches = [torch.randn(2, 3, 64, 64, generator=rng)]
    int8 = quantize(model, batches, backend="fbgemm")
    path = save_quantized(int8, tmp_path / "r18.pt", batches[0], meta={"model": "resnet18"})
    loaded, meta = load_quantized(path)
    assert meta["model"] == "resnet18" and meta["backend"] == "fbgemm"
    assert torch.backends.quantized.engine == "fbgemm"
    x = torch.randn(1, 3, 96, 80, generator=rng)  # another size than the traced one
    with torch.no_grad():
        for a, b, f in zip(int8(x), loaded(x), model(x)):
            assert torch.equal(a, b)
            assert a.shape == f.shape


@pytest.mark.slow
def test_detector_network_int8_with_float_post_processing(tmp_path, rng):
    """What `resbone eval --int8` runs: the detector whole, its backbone + FPN + head int8."""
    from resbone.detection.config import load_cfg
    from resbone.detection.detector import build_detector

    cfg = load_cfg(os.path.join(os.path.dirname(__import__("resbone").__file__), "configs", "fcos",
                                "shapes_R_18_FPN.yaml"), ["MODEL.DEVICE", "cpu"])
    detector = build_detector(cfg).eval()
    images = [[torch.rand(3, 96, 96, generator=rng) for _ in range(2)] for _ in range(2)]
    with pytest.warns(UserWarning, match="GroupNorm"):  # the demo's GN body and head: no int8 GroupNorm
        int8 = quantize(detector, images)
    assert int8 is not detector and type(int8.forward_network).__name__ == "GraphModule"
    batch = detector.transform(images[0])[0]
    with torch.no_grad():
        # the float network with its head unrolled per level (what gets quantized) is the detector's own
        for ref, out in zip(detector.forward_network(batch), DetectorNetwork(detector)(batch)):
            assert all(torch.equal(r, o) for r, o in zip(ref, out)) and len(ref) == len(out) == 5
        for ref, out in zip(detector.forward_network(batch), int8.forward_network(batch)):  # logits, boxes, centerness
            assert [r.shape for r in ref] == [o.shape for o in out]
            ref, out = torch.cat([r.flatten() for r in ref]), torch.cat([o.flatten() for o in out])
            assert float(torch.corrcoef(torch.stack([ref, out]))[0, 1]) > 0.9
        detections = int8(images[0])
    assert [sorted(d) for d in detections] == [["boxes", "labels", "scores"]] * 2
    path = save_quantized(int8, tmp_path / "fcos.pt", batch)
    loaded, _ = load_quantized(path, detector)
    with torch.no_grad():
        for a, b in zip(int8(images[1]), loaded(images[1])):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    with pytest.raises(TypeError, match="FCOS detector"):
        quantize_detector(create_model("resnet18"), images)


def test_bad_input_errors(tmp_path, rng):
    model = create_model("resnet18", num_classes=10)
    with pytest.raises(ValueError, match="backend must be"):
        quantize(model, torch.randn(1, 3, 32, 32), backend="tensorrt")
    with pytest.raises(TypeError, match="calibration item 0"):
        quantize(model, [torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8)])
    with pytest.raises(ValueError, match="holds no batch"):
        quantize(model, [])
    with pytest.raises(TypeError, match="calibration must be"):
        quantize(model, "images/")
    with pytest.raises(ValueError, match="max_batches"):
        quantize(model, torch.randn(1, 3, 32, 32), max_batches=0)
    other = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(other))
    with pytest.raises(ValueError, match="not one `resbone quantize` wrote"):
        load_quantized(other)
    with pytest.raises(FileNotFoundError):
        load_quantized(tmp_path / "missing.pt")


def test_cpu_int8_features_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_int8_features(str(info)) == {"avx2": True, "avx512f": True, "avx512_vnni": True,
                                            "avx_vnni": False, "amx_int8": False}
    assert not any(cpu_int8_features(str(tmp_path / "none")).values())
    # backend="auto": oneDNN where AVX-512 VNNI or AMX (measured fastest there), x86 on AVX2-only CPUs
    assert default_backend(str(info)) == "onednn"
    info.write_text("flags\t\t: fpu avx2\n")
    assert default_backend(str(info)) == "x86"
    info.write_text("flags\t\t: avx2 amx_int8\n")
    assert default_backend(str(info)) == "onednn"


def test_the_float_model_is_left_as_it_was(rng):
    model = create_model("resnet18", num_classes=10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize(model, [torch.randn(2, 3, 32, 32, generator=rng)])
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_int8_kernels_as_torchvision_quantized_resnet(rng):
    """resbone's FX graph runs what torchvision's eager quantized resnet runs, kernel for kernel: one input
    quantize, Conv+BN+ReLU as one int8 conv_relu, the residual add and ReLU as one add_relu, int8 pooling and
    linear, one dequantize; no stray quantize / dequantize pair and no float op left in between."""
    from bench.int8 import op_profile, torchvision_int8

    model = create_model("resnet18").eval()
    batches = [torch.randn(2, 3, 32, 32, generator=rng)]
    ours, theirs = quantize(model, batches), torchvision_int8("resnet18", model, batches)

    def kernels(int8) -> dict[str, int]:
        def step():
            with torch.inference_mode():
                return int8(batches[0])
        return {op: calls for op, (calls, _) in op_profile(step).items()
                if op.startswith(("quantized::", "aten::quantize", "aten::dequantize", "aten::quantized_",
                                  "aten::_adaptive_avg_pool2d", "aten::conv", "aten::add", "aten::relu",
                                  "aten::linear", "aten::max_pool2d"))}

    found = kernels(ours)
    assert found == kernels(theirs)
    assert found["quantized::conv2d_relu"] == 9 and found["quantized::add_relu"] == 8  # 8 BasicBlocks
    assert found["aten::quantize_per_tensor"] == 1 and found["aten::dequantize"] == 1
