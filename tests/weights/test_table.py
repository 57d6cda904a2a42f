"""The weights table against the publishers' own code: torchvision's Weights enums, timm's pretrained_cfg,
mmengine's hub json files, mmpretrain's metafile, Cadene's pretrained_settings, fast-reid's model_urls; the
eval transform against torchvision's ImageClassification preset."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision

from resbone.models.registry import is_model
from resbone.weights import all_weights, get_weights
from resbone.weights import published as P
from tests.helpers.references import fastreid_backbone, pretrainedmodels_senet

BY_SOURCE = {s: [w for w in all_weights() if w.source == s] for s in ("torchvision", "timm", "openmmlab")}
_TV_TAGS = {"tv_in1k": "IMAGENET1K_V1", "tv2_in1k": "IMAGENET1K_V2"}


@pytest.mark.parametrize("weights", BY_SOURCE["torchvision"], ids=lambda w: w.name)
def test_torchvision_entries_are_torchvisions(weights):
    enum = getattr(torchvision.models.get_model_weights(weights.model), _TV_TAGS[weights.tag])
    assert weights.url == enum.url and weights.num_params == enum.meta["num_params"]
    metrics = enum.meta["_metrics"]["ImageNet-1K"]
    assert (weights.acc1, weights.acc5) == (metrics["acc@1"], metrics["acc@5"])
    preset, ours = enum.transforms(), weights.transform
    assert (ours.crop, ours.resize, ours.interpolation) == (preset.crop_size[0], preset.resize_size[0],
                                                            preset.interpolation.value)
    assert list(ours.mean) == preset.mean and list(ours.std) == preset.std


def test_torchvision_default_tags_are_torchvisions():
    for w in BY_SOURCE["torchvision"]:
        default = torchvision.models.get_model_weights(w.model).DEFAULT.name
        assert (P.DEFAULT_TAGS[w.model] == w.tag) == (_TV_TAGS[w.tag] == default), w.name


def test_transform_gives_torchvisions_preset_output():
    image = torch.randint(0, 256, (3, 300, 260), dtype=torch.uint8)
    for name in ("resnet50.tv_in1k", "resnet50.tv2_in1k"):
        enum = getattr(torchvision.models.ResNet50_Weights, _TV_TAGS[name.split(".")[1]])
        expected = enum.transforms()(image)
        torch.testing.assert_close(get_weights(name).transforms()(image), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("weights", BY_SOURCE["timm"], ids=lambda w: w.name)
def test_timm_entries_are_timms(weights):
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg(weights.name).to_dict()
    assert weights.aliases == (f"hf-hub:{cfg['hf_hub_id']}",) and weights.licence.lower() == cfg["license"]
    t = weights.transform
    assert (t.crop, t.interpolation, t.mean, t.std) == (cfg["input_size"][1], cfg["interpolation"], cfg["mean"],
                                                         cfg["std"])
    assert t.resize == math.floor(cfg["input_size"][1] / cfg["crop_pct"])  # timm's transforms_factory
    assert weights.also_cached_as == ((cfg["url"].rpartition("/")[2],) if cfg.get("url") else ())
    with torch.device("meta"):
        assert weights.num_params == sum(p.numel() for p in timm.create_model(weights.model).parameters())


def test_timm_tags_and_defaults_are_all_of_timms():
    timm = pytest.importorskip("timm")
    for model in {w.model for w in BY_SOURCE["timm"]}:
        ours = {w.name for w in BY_SOURCE["timm"] if w.model == model}
        assert ours == set(timm.list_pretrained(model + ".*")), model
        if P.DEFAULT_TAGS[model] in {w.tag for w in BY_SOURCE["timm"]}:
            assert P.DEFAULT_TAGS[model] == timm.models.get_pretrained_cfg(model).tag


def _package_file(package: str, path: str) -> Path:
    """A file of an installed package, found through its distribution's metadata: the package is not
    imported (mmengine's __init__ needs rich, mmpretrain's cv2), and other tests may have put a hollow
    stand-in of it in sys.modules, whose spec importlib.util.find_spec would refuse."""
    import importlib.metadata

    return Path(importlib.metadata.distribution(package).locate_file(f"{package}/{path}"))


def _mmengine_json(name: str) -> dict:
    return json.loads(_package_file("mmengine", f"hub/{name}").read_text())


def test_openmmlab_entries_are_mmengines_and_mmpretrains():
    import yaml

    urls = {**{f"open-mmlab://{k}": v for k, v in _mmengine_json("openmmlab.json").items()},
            **{f"mmcls://{k}": v for k, v in _mmengine_json("mmcls.json").items()}}
    for old, new in _mmengine_json("deprecated.json").items():  # mmengine renames these before the lookup
        if f"open-mmlab://{new}" in urls:
            urls[f"open-mmlab://{old}"] = urls[f"open-mmlab://{new}"]
    meta = yaml.safe_load(_package_file("mmpretrain", ".mim/configs/resnet/metafile.yml").read_text())
    accuracy = {m["Weights"]: m["Results"][0]["Metrics"] for m in meta["Models"] if "Weights" in m}
    for w in BY_SOURCE["openmmlab"]:
        assert all(urls[a] == w.url for a in w.aliases), w.name
        if w.acc1 is not None:
            assert (w.acc1, w.acc5) == (accuracy[w.url]["Top 1 Accuracy"], accuracy[w.url]["Top 5 Accuracy"])


def test_cadene_entries_are_pretrainedmodels():
    settings = pretrainedmodels_senet().pretrained_settings
    for w in (w for w in all_weights() if w.source == "cadene"):
        reference = settings[w.model]["imagenet"]
        assert w.url == reference["url"] and reference["input_space"] == "RGB"
        assert list(w.transform.mean) == reference["mean"] and list(w.transform.std) == reference["std"]
        assert reference["input_range"] == [0, 1] and reference["input_size"][1] == w.transform.crop


def test_ibn_and_old_torchvision_files_are_the_ones_fast_reid_names():
    urls = fastreid_backbone().model_urls
    ibn = {w.model: w.url for w in all_weights() if w.source == "ibn-net"}
    assert ibn["resnet50_ibn_a"] == urls["ibn_50x"] and ibn["resnet101_ibn_a"] == urls["ibn_101x"]
    assert ibn["se_resnet101_ibn_a"] == urls["se_ibn_101x"]
    for depth in (18, 34, 50, 101):
        assert urls[f"{depth}x"].endswith("/" + P.TORCHVISION_OLD_FILES[f"resnet{depth}"])


def test_every_entry_names_a_registered_model_and_every_model_has_a_default():
    assert all(is_model(w.model) for w in all_weights())
    assert {w.model for w in all_weights()} == set(P.DEFAULT_TAGS)
    for model, tag in P.DEFAULT_TAGS.items():
        assert get_weights(model).name == f"{model}.{tag}"


def test_fast_reid_entries_take_fast_reids_test_input():
    from fastreid.config import get_cfg

    cfg = get_cfg()
    for w in (w for w in all_weights() if w.source == "fast-reid"):
        assert w.transform.resize == w.transform.crop == tuple(cfg.INPUT.SIZE_TEST)
        assert w.transform.mean == pytest.approx([m / 255 for m in cfg.MODEL.PIXEL_MEAN])
        assert w.transform.std == pytest.approx([s / 255 for s in cfg.MODEL.PIXEL_STD])
        assert w.model_kwargs["last_stride"] == cfg.MODEL.BACKBONE.LAST_STRIDE and w.results
