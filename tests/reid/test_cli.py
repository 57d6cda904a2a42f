"""`resbone data reid / train / eval / reid extract` end to end on a tiny generated set with the shipped demo
config (narrowed): train and eval print the same rank-1 / mAP, eval draws the ranked lists, the extracted
embeddings equal those of a ReidModel built by hand with the checkpoint's weights, `resbone export` of the
trained model gives them in onnxruntime, `predict` and bad `--out` names get a sentence, and `resbone configs`
lists the re-id configs."""
from __future__ import annotations

import os
import re

import numpy as np
import onnxruntime
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from resbone.cli import main
from resbone.reid.model import ReidModel
from resbone.tasks import load_cfg

CONFIG = "reid/synthetic_resnet18"


def _opts(root: str, out: str) -> list[str]:
    return ["MODEL.BASE_CHANNELS", "8", "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", root, "DATASETS.TEST", f"('{root}',)",
            "SOLVER.IMS_PER_BATCH", "12", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
            "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.PROGRESS_BAR", "False", "TEST.EVAL_PERIOD", "0",
            "TEST.RANKED_QUERIES", "3", "OUTPUT_DIR", out]


def _figures(printed: str, name: str) -> str:
    return re.search(rf"^{re.escape(name)}: (rank-1 .*mAP [\d.]+)$", printed, re.M).group(1)


def _by_hand(weights: str, files: list[str]) -> torch.Tensor:
    """The demo's network built directly, the checkpoint's weights loaded strictly, images normalised by hand."""
    model = ReidModel(6, "resnet18", pooling="avg", base_channels=8)
    model.load_state_dict(torch.load(weights, weights_only=True)["model"])
    images = torch.stack([TF.normalize(TF.to_tensor(Image.open(f).convert("RGB")), [0.485, 0.456, 0.406],
                                       [0.229, 0.224, 0.225]) for f in files])
    with torch.no_grad():
        return model.eval()(images)


def test_data_train_eval_extract_and_onnx(tmp_path, capsys):
    root, out = str(tmp_path / "set"), str(tmp_path / "run")
    assert main(["data", "reid", "--out", root, "--num-train", "6", "--num-val", "3", "--size", "64",
                 "--seed", "1"]) == 0
    assert f"query: {os.path.join(root, 'query')}" in capsys.readouterr().out
    assert Image.open(os.path.join(root, "query", sorted(os.listdir(os.path.join(root, "query")))[0])).size == (32, 64)

    assert main(["train", "--threads", "1", CONFIG, *_opts(root, out)]) == 0
    trained = _figures(capsys.readouterr().out, root)
    assert {"model_final.pth", "metrics.jsonl", "ranked_set.png", "eval_results.json"} <= set(os.listdir(out))

    weights = os.path.join(out, "model_final.pth")
    pictures = str(tmp_path / "pictures")
    assert main(["eval", CONFIG, "--weights", weights, "--out", pictures, *_opts(root, out)]) == 0
    assert _figures(capsys.readouterr().out, root) == trained
    assert Image.open(os.path.join(pictures, "ranked_set.png")).size[1] == 3 * (128 + 10)  # 3 queries, 128 px tiles

    query = os.path.join(root, "query")
    assert main(["reid", "extract", CONFIG, query, "--weights", weights, "--out", str(tmp_path / "q.npy"),
                 "--opts", *_opts(root, out)]) == 0
    names = open(tmp_path / "q.txt").read().split()
    assert names == sorted(os.listdir(query)) and len(names) == 6
    files = [os.path.join(query, n) for n in names]
    expected = _by_hand(weights, files)
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert main(["reid", "extract", CONFIG, query, "--weights", weights, "--out", str(tmp_path / "q.pt")]) == 2
    assert "do not fit the re-id resnet18 with 6 identities" in capsys.readouterr().err  # the config's width is 16
    assert main(["reid", "extract", CONFIG, query, "--weights", weights, "--out", str(tmp_path / "q.pt"),
                 "--opts", *_opts(root, out)]) == 0
    saved = torch.load(tmp_path / "q.pt", weights_only=True)
    assert saved["files"] == names
    torch.testing.assert_close(saved["embeddings"], expected, rtol=1e-4, atol=1e-5)

    # the ONNX export of the trained model (its input size from the config), in onnxruntime
    path = str(tmp_path / "reid.onnx")
    assert main(["export", CONFIG, path, "--checkpoint", weights, "--set", "MODEL.BASE_CHANNELS=8"]) == 0
    assert "input 1x3x64x32" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    images = torch.stack([TF.normalize(TF.to_tensor(Image.open(f).convert("RGB")), [0.485, 0.456, 0.406],
                                       [0.229, 0.224, 0.225]) for f in files])
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    got = session.run(None, {"images": images.numpy()})[0]
    assert np.abs(got - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-4


def test_user_errors_get_a_sentence(reid_set, tmp_path, capsys):
    assert main(["predict", CONFIG, "--weights", str(tmp_path / "w.pth"), "--out", str(tmp_path)]) == 2
    assert "is a re-id config" in capsys.readouterr().err
    assert main(["reid", "extract", CONFIG, reid_set, "--weights", "w.pth", "--out", str(tmp_path / "e.csv")]) == 2
    assert "--out must end in .npy or .pt, got" in capsys.readouterr().err
    assert main(["reid", "extract", "fcos/shapes_R_18_FPN", reid_set, "--weights", "w.pth", "--out", "e.pt"]) == 2
    assert "needs a re-id one (TASK: reid)" in capsys.readouterr().err
    assert main(["reid", "extract", CONFIG, reid_set, "--weights", str(tmp_path / "none.pth"), "--out",
                 str(tmp_path / "e.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", CONFIG, str(tmp_path / "m.onnx")]) == 2
    assert "is a re-id config: give the trained weights with --checkpoint" in capsys.readouterr().err
    assert main(["train", CONFIG, "SOLVER.MARGN", "0.2"]) == 2
    assert "did you mean SOLVER.MARGIN" in capsys.readouterr().err


def test_configs_lists_the_reid_configs(capsys):
    assert main(["configs", "reid/*"]) == 0
    assert capsys.readouterr().out.split() == ["reid/market1501_resnet50_ibn_a", "reid/synthetic_resnet18"]
    market = load_cfg(os.path.join(os.path.dirname(__file__), "..", "..", "resbone", "configs", "reid",
                                   "market1501_resnet50_ibn_a.yaml"))
    assert (market.TASK, market.MODEL.NAME, market.MODEL.LAST_STRIDE, tuple(market.INPUT.SIZE)) == \
        ("reid", "resnet50_ibn_a", 1, (256, 128))
    assert market.SOLVER.IMS_PER_BATCH // market.DATALOADER.NUM_INSTANCE == 16
    assert (market.SOLVER.OPTIMIZER, market.SOLVER.BASE_LR, market.SOLVER.WEIGHT_DECAY) == ("Adam", 3.5e-4, 5e-4)
