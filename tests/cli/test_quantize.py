"""`resbone quantize`: the written file is what `resbone.deploy.quantize` makes of the same weights and
calibration images (loaded back, identical outputs); bad folders exit with code 2 and a message."""
from __future__ import annotations

import pytest
import torch

from resbone.cli import main
from resbone.cli.quantize import _classifier_batches, calibration_images
from resbone.deploy.quantize import load_quantized, quantize
from resbone.factory import create_model


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> str:
    from resbone.detection.data.shapes import generate_shapes_split

    root = tmp_path_factory.mktemp("calib")
    generate_shapes_split(str(root), "val", num_images=6, image_size=48)
    return str(root / "val")


def test_quantize_writes_what_the_library_makes(image_dir, tmp_path, capsys):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3).eval()
    weights = tmp_path / "w.pth"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "int8.pt"
    code = main(["quantize", "resnet18", "--checkpoint", str(weights), "--calib", image_dir, "--out", str(out),
                 "--input-size", "32", "32", "--batch", "4", "--set", "num_classes=3"])
    printed = capsys.readouterr().out
    assert code == 0 and f"wrote {out}" in printed and "top-1 agreement" in printed and "avx2" in printed
    loaded, meta = load_quantized(out)
    assert meta["model"] == "resnet18" and meta["calibration_images"] == 6 and meta["backend"] == "x86"
    batches = _classifier_batches(model, calibration_images(image_dir, 64), (32, 32), 4)
    assert [len(b) for b in batches] == [4, 2]
    int8 = quantize(model, batches)
    with torch.no_grad():
        assert torch.equal(loaded(batches[0]), int8(batches[0]))


@pytest.mark.parametrize("problem, message", [("missing", "is not a folder"), ("empty", "holds no image")])
def test_bad_calibration_folder_exits_2(problem, message, tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    calib = str(folder if problem == "empty" else tmp_path / "nowhere")
    code = main(["quantize", "resnet18", "--calib", calib, "--out", str(tmp_path / "x.pt")])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_set_must_be_key_value():
    from resbone.cli.quantize import _model_arguments

    assert _model_arguments(["num_classes=None", "last_stride=1"]) == {"num_classes": None, "last_stride": 1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _model_arguments(["num_classes"])


def test_qat_steps_write_what_quantize_qat_makes(tmp_path, capsys):
    """--qat-steps: quantization-aware training on a labelled folder (class sub-folders), the file loaded back
    equal to resbone.deploy.quantize_qat's model of the same weights, images and shuffling seed."""
    from resbone.classification.data.textures import generate_textures
    from resbone.cli.quantize import labelled_loader
    from resbone.deploy import quantize_qat

    train = generate_textures(str(tmp_path / "data"), num_train=2, num_val=1, image_size=32, seed=1)["train"]
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=6).eval()
    weights, out = tmp_path / "w.pth", tmp_path / "qat.pt"
    torch.save(model.state_dict(), weights)
    code = main(["quantize", "resnet18", "--checkpoint", str(weights), "--calib", train, "--out", str(out),
                 "--input-size", "32", "32", "--batch", "4", "--set", "num_classes=6", "--qat-steps", "3"])
    printed = capsys.readouterr().out
    assert code == 0 and "quantization-aware training: 3 steps of 4 images" in printed
    loaded, meta = load_quantized(out)
    assert meta["qat_steps"] == 3 and meta["calibration_images"] == 12
    loader = labelled_loader(model, train, (32, 32), 4)
    reference = quantize_qat(model, loader, steps=3)
    x = next(iter(loader))[0]
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))
    code = main(["quantize", "resnet18", "--checkpoint", str(weights), "--calib", train, "--out", str(out),
                 "--input-size", "32", "32", "--qat-steps", "3"])  # 1000 classes against the folder's 6
    assert code == 2 and "holds 6 classes, the model 1000" in capsys.readouterr().err
