"""The classification task on the engine: fine-tuning from a torchvision checkpoint file with num_classes from
the data (5), the backbone's lower learning rate and frozen stages, a run killed mid-way and resumed gives
the losses and weights of an uninterrupted one (random crops, flips, TrivialAugment and MixUp / CutMix on),
the config refuses unknown keys with close names, and TASK picks the task."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import torchvision

from resbone.classification.config import load_cfg
from resbone.classification.task import ClassificationTrainer, build_classifier
from tests.classification.helpers import tiny_cfg, tiny_textures
from tests.helpers.interrupt import Interrupted, dies_at


def _five_classes(root) -> dict[str, str]:
    data = tiny_textures(root)
    for split in data.values():
        shutil.rmtree(os.path.join(split, "triangle_stripes"))
    return data


def test_fine_tuning_a_torchvision_file_with_five_classes(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    data = _five_classes(tmp_path / "data")
    cfg = tiny_cfg(data, str(tmp_path / "run"), "MODEL.WEIGHT", str(tmp_path / "resnet18.pth"),
                   "SOLVER.BACKBONE_LR_FACTOR", "0.1", "MODEL.FROZEN_STAGES", "1", "SOLVER.MAX_ITER", "1")
    trainer = ClassificationTrainer(cfg)
    model = trainer.module
    assert model.fc.out_features == 5
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    # frozen: the stem and layer1 take no gradient; the rest of the body learns at a tenth of the classifier's rate
    assert not model.conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    lrs = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(model.conv1.weight) not in lrs
    assert lrs[id(model.layer2[0].conv1.weight)] == pytest.approx(0.1 * lrs[id(model.fc.weight)])
    result = trainer.train()
    state = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)
    assert state["class_names"] == ["circle_checker", "circle_stripes", "square_checker", "square_stripes",
                                    "triangle_checker"]
    assert set(result["eval"][data["val"]]) >= {"Acc@1", "Acc@5", "per_class", "confusion", "confusion_png"}
    assert os.path.isfile(tmp_path / "run" / "confusion_val.png")


def _losses(output_dir):
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [(r["iter"], r["loss"]) for r in map(json.loads, handle) if "loss" in r]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_losses_and_weights_of_an_uninterrupted_run(tmp_path, workers):
    """Also with loader workers: each sample's augmentations are drawn from (SEED, epoch, index) and the batch mix
    in the main process, so workers started afresh mid-epoch draw what the uninterrupted run drew, and the run
    with 2 workers, interrupted and resumed, equals the uninterrupted one without workers."""
    data = tiny_textures(tmp_path / "data")
    opts = ("SOLVER.MAX_ITER", "5", "INPUT.AUTO_AUGMENT", "ta_wide", "INPUT.MIXUP_ALPHA", "0.2",
            "INPUT.CUTMIX_ALPHA", "1.0", "INPUT.RANDOM_ERASE", "0.25", "SOLVER.TEST_AFTER_TRAIN", "False",
            "MODEL_EMA.ENABLED", "True")
    straight = tiny_cfg(data, str(tmp_path / "straight"), *opts)
    ClassificationTrainer(straight, model_fn=lambda cfg: build_classifier(cfg, 6)).train()
    broken = tiny_cfg(data, str(tmp_path / "broken"), *opts, "DATALOADER.NUM_WORKERS", str(workers))
    with pytest.raises(Interrupted):
        ClassificationTrainer(broken, model_fn=dies_at(4, lambda cfg: build_classifier(cfg, 6))).train()  # after ckpt 2
    resumed = ClassificationTrainer(broken, model_fn=lambda cfg: build_classifier(cfg, 6), resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    resumed_log, straight_log = _losses(broken.OUTPUT_DIR), _losses(straight.OUTPUT_DIR)
    assert [i for i, _ in resumed_log] == [i for i, _ in straight_log] == [1, 2, 3, 4, 5]
    assert [loss for _, loss in resumed_log] == pytest.approx([loss for _, loss in straight_log], rel=1e-6)
    a = torch.load(tmp_path / "broken" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6)
        torch.testing.assert_close(a["model_ema"]["model"][key], b["model_ema"]["model"][key], rtol=0, atol=1e-6)


def test_config_keys_are_checked():
    with pytest.raises(KeyError, match=r"unknown config key INPUT.MIXUP_ALFA .*did you mean INPUT.MIXUP_ALPHA"):
        load_cfg(None, ["INPUT.MIXUP_ALFA", "0.2"])
    with pytest.raises(ValueError, match=r"INPUT.AUTO_AUGMENT must be one of .*'ta_wide'"):
        load_cfg(None, ["INPUT.AUTO_AUGMENT", "trivial"])
    with pytest.raises(ValueError, match=r"SOLVER.LABEL_SMOOTHING must be >= 0 and < 1"):
        load_cfg(None, ["SOLVER.LABEL_SMOOTHING", "1.5"])
    with pytest.raises(KeyError, match="unknown config key MODEL.FCOS"):
        load_cfg(None, ["MODEL.FCOS.NUM_CLASSES", "3"])  # a detection key is not a classification key


def test_num_classes_must_fit_the_data(tmp_path):
    data = tiny_textures(tmp_path / "data")
    with pytest.raises(ValueError, match=r"MODEL.NUM_CLASSES is 10 but DATASETS.TRAIN has 6 classes"):
        ClassificationTrainer(tiny_cfg(data, str(tmp_path / "run"), "MODEL.NUM_CLASSES", "10"))


def test_the_config_names_its_task(tmp_path):
    from resbone.tasks import load_cfg as load_any
    from resbone.tasks import task_name

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert task_name(os.path.join(repo, "resbone", "configs", "fcos", "shapes_R_18_FPN.yaml")) == "detection"
    shipped = os.path.join(repo, "resbone", "configs", "classification", "textures_resnet18.yaml")
    assert task_name(shipped) == "classification" and load_any(shipped).MODEL.NAME == "resnet18"
    child = tmp_path / "child.yaml"
    child.write_text(f"_BASE_: {shipped}\nSOLVER:\n  MAX_ITER: 7\n")
    assert load_any(str(child)).SOLVER.MAX_ITER == 7 and load_any(str(child)).TASK == "classification"
    with pytest.raises(ValueError, match=r"TASK 'clasification' is not a task .*did you mean 'classification'"):
        task_name(None, ["TASK", "clasification"])


def test_channels_last_trains_as_nchw(tmp_path):
    """MODEL.CHANNELS_LAST: NHWC weights and batches (resbone.engine.accelerate on the classifier's forward), the
    same loss and update up to float rounding. At 32 px a resnet18 normalises 1x1 maps over 4 images in layer4,
    which makes its gradients large and touchy (updates 2% apart): crops of 64 px, one step, updates to 1%."""
    data = tiny_textures(tmp_path / "data")
    runs = {}
    for flag in ("False", "True"):
        cfg = tiny_cfg(data, str(tmp_path / flag), "MODEL.CHANNELS_LAST", flag, "SOLVER.MAX_ITER", "1",
                       "SOLVER.TEST_AFTER_TRAIN", "False", "INPUT.SIZE", "64")
        trainer = ClassificationTrainer(cfg)
        before = {k: v.clone() for k, v in trainer.module.named_parameters()}
        runs[flag] = (trainer.train()["loss"], trainer.module, before)
    assert runs["True"][1].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert runs["True"][0] == pytest.approx(runs["False"][0], rel=1e-5)
    for (name, fast), plain in zip(runs["True"][1].named_parameters(), runs["False"][1].parameters()):
        assert torch.equal(runs["True"][2][name], runs["False"][2][name])  # the same start
        update = plain.detach() - runs["False"][2][name]
        assert (fast.detach() - plain.detach()).norm() <= 1e-2 * update.norm() + 1e-7, name
