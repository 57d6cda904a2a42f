"""bench.classify: the resbone command it builds is a valid config with the run's batch, size, length and recipe;
both sides run the same iterations per epoch as timm's own loader; images/s and Acc@1 are read from resbone's
metrics.jsonl / eval_results.json (the format its MetricsWriter and EvalHook write) and from the timm child's
result line; `--quick` runs both sides end to end and `--parts` times both networks and both loaders. Timings
are printed, never asserted."""
from __future__ import annotations

import json
import re
import types

import pytest

from bench import classify
from resbone.classification.data.textures import generate_textures
from resbone.tasks import load_cfg


def _args(**kw):
    base = dict(epochs=3, batch_size=8, image_size=48, threads=1)
    return types.SimpleNamespace(**{**base, **kw})


def test_the_resbone_command_is_a_config_with_the_runs_settings(tmp_path):
    data = {"train": str(tmp_path / "train"), "val": str(tmp_path / "val")}
    command = classify.resbone_command(_args(), data, str(tmp_path / "run"), per_epoch=5)
    assert command[1:4] == ["-m", "resbone", "train"] and command[command.index("--threads") + 1] == "1"
    cfg = load_cfg(classify.CONFIG, command[command.index(classify.CONFIG) + 1:])  # unknown keys would raise
    assert cfg.TASK == "classification" and cfg.MODEL.NAME == "resnet18"
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.IMS_PER_BATCH) == (15, 5, 8)
    assert (cfg.INPUT.SIZE, cfg.INPUT.TEST_SIZE, cfg.INPUT.CROP_PCT) == (48, 48, 1.0)
    assert tuple(cfg.INPUT.SCALE) == classify.RECIPE["scale"] and cfg.INPUT.HFLIP_PROB == classify.RECIPE["hflip"]
    assert cfg.SOLVER.OPTIMIZER == "AdamW" and cfg.SOLVER.LABEL_SMOOTHING == classify.RECIPE["smoothing"]
    assert cfg.TEST.EVAL_PERIOD == 0 and cfg.SOLVER.CHECKPOINT_PERIOD == 15 and cfg.DATALOADER.NUM_WORKERS == 0
    assert cfg.DATASETS.TRAIN == data["train"] and tuple(cfg.DATASETS.TEST) == (data["val"],)


def test_both_sides_run_the_iterations_of_timms_loader(tmp_path):
    root = tmp_path / "textures"
    generate_textures(str(root), num_train=5, num_val=1, image_size=32)  # 30 training images
    train, _, classes = classify._timm_loaders(str(root), 8, 32)
    assert classes == 6
    assert len(train) == classify.iterations_per_epoch(classify.count_images(str(root / "train")), 8) == 3
    with pytest.raises(ValueError, match="fewer than the batch size 64"):
        classify.iterations_per_epoch(30, 64)


def test_results_are_read_from_resbones_records_and_the_timm_line(tmp_path):
    records = [dict(iter=1, lr=0.0007, loss=1.9, loss_cls=1.9, data_time=0.01, time=0.8),
               dict(iter=18, lr=0.0018, loss=1.2, loss_cls=1.2, data_time=0.01, time=0.5),
               dict(iter=18, dataset="val", **{"Acc@1": 61.1, "Acc@5": 100.0})]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "eval_results.json").write_text(json.dumps({"val": {"Acc@1": 61.1, "Acc@5": 100.0}}))
    got = classify.resbone_result(str(tmp_path), batch=32)
    assert got["images_per_s"] == pytest.approx(64.0) and got["train_seconds"] == pytest.approx(9.0)
    assert (got["iterations"], got["acc1"]) == (18, 61.1)
    out = "INFO timm ...\nBENCH_RESULT {\"images_per_s\": 1.0}\nlater\nBENCH_RESULT {\"images_per_s\": 2.5}\n"
    assert classify.parse_result(out) == {"images_per_s": 2.5}
    with pytest.raises(ValueError, match="no BENCH_RESULT line"):
        classify.parse_result("Traceback ...")


@pytest.mark.slow
def test_quick_run_prints_both_sides_twice_and_the_ratio(capsys):
    assert classify.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(\d) (resbone train|timm \(train.py's loop\))\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+"
                      r"([\d.]+)\s+([\d.]+)%$", out, re.M)
    assert [(r[0], r[1]) for r in rows] == list(zip("1234", classify.ORDER))
    assert {r[4] for r in rows} == {"3"}  # 24 images, batch 8, 1 epoch: the same iterations on both sides
    assert all(float(r[2]) > 0 and float(r[6]) > 0 for r in rows)
    assert rows[0][7] == rows[3][7] and rows[1][7] == rows[2][7]  # seeded: each side's two runs agree
    assert re.search(r"resbone / timm: \d+\.\d\dx .*\nwhole-process CPU seconds, timm / resbone: \d+\.\d\dx", out)


@pytest.mark.slow
def test_parts_times_both_networks_and_both_loaders(capsys):
    assert classify.main(["--parts", "--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for title in ("resnet18 forward + loss + backward, batch 8x3x32x32", "loading + augmentation of 8 images"):
        block = out.split(title, 1)[1].split("\n\n", 1)[0]
        assert re.search(r"^timm \(train.py's loop\)\s+[\d.]+\s+1\.00x", block, re.M), block
        assert re.search(r"^resbone train\s+[\d.]+\s+\d+\.\d\dx", block, re.M), block
