"""`resbone data / train / eval / predict` end to end on a tiny shapes set (a few iterations of the
shipped shapes config, narrowed): files appear, eval prints the six COCO numbers, predict draws PNGs,
`--resume` picks up the last checkpoint, and user errors exit with status 2 and a sentence."""
from __future__ import annotations

import json
import os
import re

import pytest
import torch
from PIL import Image

from resbone.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "resbone", "configs", "fcos", "shapes_R_18_FPN.yaml")


def test_data_shapes(tmp_path, capsys):
    assert main(["data", "shapes", "--out", str(tmp_path), "--num-train", "3", "--num-val", "2", "--size", "64",
                 "--seed", "1"]) == 0
    assert "instances_train.json" in capsys.readouterr().out
    assert len(json.load(open(tmp_path / "annotations" / "instances_val.json"))["images"]) == 2
    assert Image.open(tmp_path / "train" / "000003.png").size == (64, 64)


@pytest.mark.slow
def test_train_eval_predict_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.ROOT", str(tmp_path / "data"), "DATASETS.SHAPES.NUM_TRAIN", "4",
            "DATASETS.SHAPES.NUM_VAL", "2", "DATASETS.SHAPES.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
            "MODEL.RESNETS.BACKBONE_OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CONVS", "1", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.PROGRESS_BAR", "False",
            "TEST.IMS_PER_BATCH", "2", "OUTPUT_DIR", out]
    assert main(["train", CONFIG, *opts]) == 0
    printed = capsys.readouterr().out
    assert "shapes_val: AP " in printed and "APl" in printed
    assert {"model_0000001.pth", "model_final.pth", "metrics.jsonl", "curves.png"} <= set(os.listdir(out))

    assert main(["train", CONFIG, *opts, "SOLVER.MAX_ITER", "3", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads(open(os.path.join(out, "metrics.jsonl")).readlines()[-2])["iter"] == 3

    weights = os.path.join(out, "model_final.pth")
    assert main(["eval", CONFIG, "--weights", weights, *opts]) == 0  # overrides may follow the options
    assert "shapes_val: AP " in capsys.readouterr().out

    _eval_int8(weights, opts, capsys)

    image = os.path.join(str(tmp_path / "data"), os.listdir(tmp_path / "data")[0], "val", "000001.png")
    assert main(["predict", CONFIG, "--weights", weights, image, "--out", str(tmp_path / "pred"),
                 "--score-threshold", "0.0", "--opts", *opts]) == 0
    drawn = Image.open(tmp_path / "pred" / "000001.png")
    assert drawn.size == (384, 384)  # small images are drawn enlarged (issue 10 item 7)


def _eval_int8(weights: str, opts: list, capsys) -> None:
    """`eval --int8` evaluates the detector whose network resbone.deploy.quantize made int8 (torch's quantized
    convs), calibrated on the training set."""
    import resbone.deploy

    made = []

    def quantize(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    real = resbone.deploy.quantize
    resbone.deploy.quantize = quantize
    try:
        assert main(["eval", CONFIG, "--weights", weights, "--int8", *opts]) == 0
    finally:
        resbone.deploy.quantize = real
    assert "shapes_val: AP " in capsys.readouterr().out
    assert len(made) == 1 and any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in made[0].modules())


def test_user_errors_exit_2_with_a_sentence(tmp_path, capsys):
    assert main(["train", CONFIG, "SOLVER.MAX_ITERS", "3"]) == 2
    assert "unknown config key SOLVER.MAX_ITERS" in capsys.readouterr().err
    assert main(["train", CONFIG, "MODEL.WEIGHT", "catalog://ImageNetPretrained/MSRA/R-999", "OUTPUT_DIR",
                 str(tmp_path), "DATASETS.ROOT", str(tmp_path)]) == 2
    assert "names no checkpoint resbone knows" in capsys.readouterr().err
    assert main(["eval", CONFIG, "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # KEY VALUE after --weights are overrides too, checked like the others
    assert main(["eval", CONFIG, "--weights", str(tmp_path / "missing.pth"), "SOLVER.MAX_ITERS", "3"]) == 2
    assert "unknown config key SOLVER.MAX_ITERS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # an unknown option is still argparse's usage error
        main(["eval", CONFIG, "--weights", "w.pth", "--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_num_classes_must_fit_the_data(tmp_path, capsys):
    assert main(["train", CONFIG, "MODEL.FCOS.NUM_CLASSES", "81", "DATASETS.ROOT", str(tmp_path),
                 "DATASETS.SHAPES.NUM_TRAIN", "2", "DATASETS.SHAPES.NUM_VAL", "1", "DATASETS.SHAPES.IMAGE_SIZE", "32",
                 "OUTPUT_DIR", str(tmp_path / "out")]) == 2
    assert "set MODEL.FCOS.NUM_CLASSES 4" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval"])
def test_compile_flag_is_model_compile(command):
    from resbone.cli import build_parser
    from resbone.cli.tasks import _config

    extra = ["--weights", "w.pth"] if command == "eval" else []
    args = build_parser().parse_args([command, "resbone/configs/fcos/shapes_R_18_FPN.yaml", "SOLVER.MAX_ITER", "7",
                                      *extra, "--compile"])
    cfg = _config(args)
    assert cfg.MODEL.COMPILE is True and cfg.SOLVER.MAX_ITER == 7
    args = build_parser().parse_args([command, "resbone/configs/fcos/shapes_R_18_FPN.yaml", *extra])
    assert _config(args).MODEL.COMPILE is False


def test_classification_train_eval_predict(tmp_path, capsys):
    """The same commands on a classification config: its TASK picks the task; a wrong option is refused."""
    from tests.classification.helpers import tiny_textures

    data = tiny_textures(tmp_path / "data")
    config = os.path.join(REPO, "resbone", "configs", "classification", "textures_resnet18.yaml")
    opts = ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", data["train"], "DATASETS.TEST", f"('{data['val']}',)",
            "INPUT.SIZE", "32", "INPUT.TEST_SIZE", "32", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "4",
            "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path / "run")]
    assert main(["train", config, *opts]) == 0
    assert re.search(r"val: Acc@1 [\d.]+  Acc@5 [\d.]+", capsys.readouterr().out)
    weights = str(tmp_path / "run" / "model_final.pth")
    assert main(["eval", config, "--weights", weights, *opts]) == 0
    assert re.search(r"val: Acc@1 [\d.]+  Acc@5 [\d.]+", capsys.readouterr().out)
    assert main(["eval", config, "--weights", weights, "--int8", *opts]) == 0  # the classifier int8 (CPU)
    printed = capsys.readouterr().out
    assert "int8 (x86 engine): calibrated on 12 images" in printed and re.search(r"val: Acc@1 [\d.]+", printed)
    folder = os.path.join(data["val"], "circle_stripes")
    assert main(["predict", config, "--weights", weights, folder, "--topk", "2", "--out", str(tmp_path / "p"),
                 "--opts", *opts]) == 0
    printed = capsys.readouterr().out
    listed = [line for line in printed.splitlines() if "circle_stripes/000000.png: " in line]
    assert len(listed) == 1 and len(listed[0].split(": ", 1)[1].split("  ")) == 2  # --topk 2: two classes
    assert Image.open(tmp_path / "p" / "predictions.png").width > 100
    assert main(["predict", config, "--weights", weights, "--grid", "6", "--out", str(tmp_path / "p"),
                 "--opts", *opts]) == 0
    assert os.path.isfile(tmp_path / "p" / "grid_val.png")
    assert main(["predict", config, "--weights", weights, folder, "--gt", "--out", str(tmp_path / "p"),
                 "--opts", *opts]) == 2
    assert "--gt applies to detection only" in capsys.readouterr().err


def test_data_textures(tmp_path, capsys):
    assert main(["data", "textures", "--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--size", "32"]) == 0
    assert "train: " in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "val")) == ["circle_checker", "circle_stripes", "square_checker",
                                                    "square_stripes", "triangle_checker", "triangle_stripes"]
