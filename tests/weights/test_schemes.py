"""Every scheme resolves to the URL its own project resolves it to: torchvision:// / modelzoo:// and
open-mmlab:// / mmcls:// against mmengine's loaders' tables (mmengine.runner.checkpoint), detectron2:// against
detectron2's Detectron2Handler prefix, catalog:// against FCOS's ModelCatalog (not installed: its six names and
its URL rule are in resbone.weights.published.CATALOG, each checked here by the rule), hf-hub: against timm."""
from __future__ import annotations

import pytest

from resbone.weights import all_weights, locate
from resbone.weights import published as P
from tests.helpers.references import _stubs


@pytest.fixture(scope="module")
def mmengine_tables():
    with _stubs():  # mmengine's __init__ imports rich, not installed here
        from mmengine.runner.checkpoint import get_external_models, get_mmcls_models, get_torchvision_models
    return get_torchvision_models(), get_external_models(), get_mmcls_models()


def _aliases(prefix: str) -> list[str]:
    return [a for w in all_weights() for a in w.aliases if a.startswith(prefix)]


def test_torchvision_names_are_mmengines(mmengine_tables):
    torchvision_urls = mmengine_tables[0]
    names = _aliases("torchvision://")
    assert len(names) > 20
    for alias in names:
        name = alias[len("torchvision://"):]
        assert locate(alias).url == torchvision_urls[name], alias
        assert locate("modelzoo://" + name).url == torchvision_urls[name]  # mmcv's older spelling


def test_open_mmlab_and_mmcls_names_are_mmengines(mmengine_tables):
    _, openmmlab, mmcls = mmengine_tables
    for alias in _aliases("open-mmlab://"):
        name = alias[len("open-mmlab://"):]
        if name in openmmlab:
            assert locate(alias).url == openmmlab[name] == locate("openmmlab://" + name).url
    for alias in _aliases("mmcls://"):
        name = alias[len("mmcls://"):]
        assert locate(alias).url == mmcls[name] == locate("mmpretrain://" + name).url


def test_detectron2_prefix_is_detectron2s():
    location = locate("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert location.url == "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    assert location.file_name == "R-50.pkl" and location.sha256_prefix() is None  # "-50." is not a hash


@pytest.mark.parametrize("name", sorted(P.CATALOG))
def test_catalog_names_follow_fcos_model_catalog(name):
    # ModelCatalog.get_c2_imagenet_pretrained: S3_C2_DETECTRON_URL + "/" + C2_IMAGENET_MODELS[name]
    location = locate(f"catalog://ImageNetPretrained/{name}")
    assert location.url == "https://dl.fbaipublicfiles.com/detectron/" + P.CATALOG[name]
    assert location.file_name == P.CATALOG[name].rpartition("/")[2]  # maskrcnn-benchmark's cache_url name


def test_hf_hub_names_are_timms():
    timm = pytest.importorskip("timm")
    cfg = timm.models.get_pretrained_cfg("resnet50d.ra2_in1k")
    location = locate(f"hf-hub:{cfg.hf_hub_id}")
    assert location.url == f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
    assert location.weights is not None and location.weights.name == "resnet50d.ra2_in1k"
    assert locate("hf-hub:timm/some_other.tag").file_name == "some_other.tag.model.safetensors"


@pytest.mark.parametrize("spec, error, words", [
    ("open-mmlab://vgg16_caffe", KeyError, ["vgg16_caffe", "open-mmlab://resnet50_v1c"]),
    ("catalog://ImageNetPretrained/MSRA/R-152", KeyError, ["R-152", "catalog://ImageNetPretrained/MSRA/R-50"]),
    ("hf-hub:resnet50", ValueError, ["ORG/REPO"]),
    ("ftp://x/y.pth", ValueError, ["ftp://x/y.pth", "torchvision://"]),
    ("https://example.org/dir/", ValueError, ["names no file"]),
])
def test_bad_addresses_name_the_value_and_what_is_allowed(spec, error, words):
    with pytest.raises(error) as info:
        locate(spec)
    assert all(word in str(info.value) for word in words), str(info.value)
