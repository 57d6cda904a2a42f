"""ONNX export against onnxruntime: classifiers, backbones, re-id embeddings and the FCOS detector (its
detections on shapes validation images equal the PyTorch detector's)."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision

from resbone import ResNet, create_model
from resbone.deploy import OnnxDetector, decode_detections, export_onnx
from resbone.deploy.detector_onnx import nms
from tests.helpers import randomize_norms
from tests.helpers.fcos import SIZE, assert_same_detections, tiny_fcos


@pytest.mark.parametrize("num_classes", [10, None])
def test_onnx_export_runs_in_onnxruntime_with_equal_outputs(tmp_path, num_classes):
    torch.manual_seed(0)
    model = randomize_norms(ResNet(18, num_classes=num_classes, out_indices=(2, 3))).eval()
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(64, 64))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 64)  # a batch size other than the traced one: the batch axis is dynamic
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.abs(g - e.numpy()).max() / np.abs(e.numpy()).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left behind


def test_export_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        export_onnx(ResNet(18), tmp_path)
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(ResNet(18), tmp_path / "m.onnx", input_size=(8,))
    with pytest.raises(TypeError, match="nn.Module"):
        export_onnx("resnet18", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="embedding"):
        export_onnx(ResNet(18, num_classes=10), tmp_path / "m.onnx", embedding=True)


def test_export_command_writes_onnx_with_the_checkpoint_weights(tmp_path):
    from resbone.cli import main

    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet18(weights=None, num_classes=7)).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "r18.onnx"
    assert main(["export", "resnet18", str(out), "--checkpoint", str(tmp_path / "r18.pth"), "--fuse",
                 "--input-size", "64", "64", "--set", "num_classes=7"]) == 0
    x = torch.randn(2, 3, 64, 64)
    got = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    assert main(["export", "resnet18", str(tmp_path / "x.onnx"), "--set", "depht=18"]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_export_leaves_the_callers_model_in_its_own_modes(tmp_path):
    # export_onnx used to leave a model that was training in eval mode (torch.onnx.export restores it)
    model = ResNet(18, num_classes=None, frozen_stages=1).train()
    modes = {name: m.training for name, m in model.named_modules()}
    assert modes["layer2"] and not modes["layer1"]  # frozen_stages=1: mixed modes to preserve
    export_onnx(model, tmp_path / "m.onnx", input_size=(32, 32))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert (tmp_path / "m.onnx").stat().st_size > 0


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_reid_model_exports_feature_maps_and_its_embedding(tmp_path):
    # the re-id layout: IBN-a (InstanceNorm halves), Linear SE, last_stride=1, a 256x128 person crop (halved)
    torch.manual_seed(0)
    model = randomize_norms(create_model("se_resnet50_ibn_a", num_classes=None, last_stride=1,
                                         stage_blocks=(1, 1, 1, 1), out_indices=(2, 3))).eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        maps = model(x)
    maps_path = export_onnx(model, tmp_path / "maps.onnx", input_size=(128, 64))
    got_maps = _session(maps_path).run(None, {"images": x.numpy()})
    assert [g.shape for g in got_maps] == [tuple(m.shape) for m in maps] and got_maps[1].shape[-2:] == (8, 4)
    for g, e in zip(got_maps, maps):
        assert np.abs(g - e.numpy()).max() / np.abs(e.numpy()).max() < 1e-4
    embedding_path = export_onnx(model, tmp_path / "emb.onnx", input_size=(128, 64), embedding=True)
    (got,) = _session(embedding_path).run(["embedding"], {"images": x.numpy()})
    expected = maps[-1].mean(dim=(2, 3)).numpy()  # the global average of the last map, computed here
    assert got.shape == (2, 2048) and np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    from resbone.detection.data import generate_shapes_split, read_image

    out = tmp_path_factory.mktemp("shapes")
    generate_shapes_split(str(out), "val", num_images=3, image_size=SIZE, seed=0)
    return [read_image(str(p)) for p in sorted((out / "val").glob("*.png"))]


def test_detector_in_onnxruntime_gives_the_pytorch_detections_on_shapes_images(tmp_path, shapes_val):
    model = tiny_fcos()
    path = export_onnx(model, tmp_path / "fcos.onnx", input_size=(SIZE, SIZE))
    detector = OnnxDetector(path)
    assert detector.input_size == (SIZE, SIZE) and detector.num_classes == 3
    # smaller images: 64x96 is padded into the graph's 96x96 input, 40x60 is resized to 64x96 first, 120x120
    # down to 96x96; boxes come back in each image's own pixels, clipped to it
    crop = shapes_val[0]
    images = [*shapes_val, crop[:, :64, :].contiguous(), crop[:, 10:50, 20:80].contiguous(),
              torch.nn.functional.interpolate(crop[None], size=(120, 120), mode="bilinear")[0]]
    with torch.no_grad():
        expected = model(images)
    got = detector([im.numpy() for im in images])
    assert_same_detections(got, expected)
    assert not model.training and [p.name for p in tmp_path.iterdir()] == ["fcos.onnx"]


def test_decoding_refuses_outputs_of_another_size():
    boxes, probs, ctr = np.zeros((1, 10, 4), np.float32), np.zeros((1, 10, 3), np.float32), np.zeros((1, 10))
    with pytest.raises(ValueError, match="level_sizes"):
        decode_detections(boxes, probs, ctr, level_sizes=[4, 4], score_thresh=0.05, score_th_on="cls",
                          pre_nms_top_n=10, nms_thresh=0.6, detections_per_img=5)


def test_numpy_nms_keeps_what_torchvision_nms_keeps():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 80
    boxes = torch.cat((xy, xy + torch.rand(300, 2, generator=g) * 30 + 1), dim=1)
    scores = torch.rand(300, generator=g)
    for threshold in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(boxes, scores, threshold).numpy()
        assert np.array_equal(nms(boxes.numpy(), scores.numpy(), threshold), expected)


def test_export_command_writes_the_demo_detector_with_its_checkpoint(tmp_path, shapes_val):
    from resbone.cli import main
    from resbone.detection.config import load_cfg
    from resbone.detection.detector import build_detector

    config = "resbone/configs/fcos/shapes_R_18_FPN.yaml"
    torch.manual_seed(0)
    model = build_detector(load_cfg(config, ["MODEL.FCOS.INFERENCE_TH", "0.1"])).eval()
    with torch.no_grad():  # detections to compare: a head that is not at its focal-loss prior
        model.head.cls_logits.bias.copy_(torch.tensor([-0.5, -1.0, -1.5]))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    out = tmp_path / "fcos.onnx"
    assert main(["export", config, str(out), "--checkpoint", str(tmp_path / "model.pth"), "--fuse",
                 "--set", "MODEL.FCOS.INFERENCE_TH=0.1"]) == 0
    detector = OnnxDetector(out)
    assert detector.input_size == (SIZE, SIZE) and detector.decode["score_thresh"] == pytest.approx(0.1)
    with torch.no_grad():
        expected = model(shapes_val)
    assert_same_detections(detector([im.numpy() for im in shapes_val]), expected)
    assert main(["export", config, str(tmp_path / "x.onnx"), "--set", "MODEL.FCOS.INFERENCE_TH"]) == 2
