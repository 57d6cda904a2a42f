"""Downloading into torch hub's cache, proven against a 127.0.0.1 server that counts requests: one request
per file, none for a cached file (ours, torchvision's, timm's), a damaged cached file fetched again once, a cut
transfer or a wrong hash leaving nothing in the cache, offline mode, and one-sentence network errors."""
from __future__ import annotations

import os
import urllib.request

import pytest
import torch
import torchvision

from resbone import create_model
from resbone.convert import load_state_dict_file
from resbone.weights import DownloadError, cache_dir, resolve, verify
from tests.weights.conftest import hashed_name, torch_bytes

TV18 = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture(scope="module")
def tv18():
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    return state, torch_bytes(state)


def _cached() -> list[str]:
    return sorted(os.listdir(cache_dir())) if cache_dir().is_dir() else []


def test_second_call_makes_no_request_and_the_file_is_torch_hubs(served, any_hash, tv18):
    served.add(TV18, tv18[1])
    first = resolve("torchvision://resnet18", progress=False)
    assert first == cache_dir() / "resnet18-f37072fd.pth" and len(served.requests) == 1
    assert resolve("torchvision://resnet18", progress=False) == first and len(served.requests) == 1
    assert str(cache_dir()) == os.path.join(os.environ["TORCH_HOME"], "hub", "checkpoints")


def test_a_file_torchvision_cached_under_its_old_name_is_used_with_no_request(served, any_hash, tv18):
    cache_dir().mkdir(parents=True)
    (cache_dir() / "resnet18-5c106cde.pth").write_bytes(tv18[1])  # torchvision < 0.13's name for V1
    assert resolve("torchvision://resnet18").name == "resnet18-5c106cde.pth" and served.requests == []


def test_hash_in_the_name_is_checked_and_a_mismatch_never_lands(served):
    data = torch_bytes({"w": torch.ones(3)})
    good = served.add("https://example.org/w/" + hashed_name("ok", data), data)
    assert resolve(good, progress=False).read_bytes() == data
    bad = served.add("https://example.org/w/bad-00000000.pth", data)
    with pytest.raises(DownloadError, match=r"sha256 does not start with 00000000.*nothing was stored"):
        resolve(bad, progress=False)
    assert _cached() == [hashed_name("ok", data)]


def test_a_transfer_cut_short_leaves_nothing_in_the_cache(served, any_hash, tv18):
    served.add(TV18, tv18[1])
    served.cut.add("/download.pytorch.org/models/resnet18-f37072fd.pth")
    with pytest.raises(DownloadError) as info:
        resolve("torchvision://resnet18", progress=False)
    assert TV18 in str(info.value) and "truncated" in str(info.value) and _cached() == []


def test_a_damaged_cached_file_is_fetched_again_once_with_a_message(served, any_hash, tv18):
    served.add(TV18, tv18[1])
    path = resolve("torchvision://resnet18", progress=False)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="is damaged"):
        assert resolve("torchvision://resnet18", progress=False) == path
    assert len(served.requests) == 2 and path.read_bytes() == tv18[1]
    assert verify("torchvision://resnet18") == path


@pytest.mark.parametrize("variable", ["RESBONE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_uses_the_cache_or_says_where_to_put_the_file(served, any_hash, tv18, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(DownloadError) as info:
        resolve("torchvision://resnet18")
    message = str(info.value)
    assert variable in message and TV18 in message and str(cache_dir() / "resnet18-f37072fd.pth") in message
    cache_dir().mkdir(parents=True)
    (cache_dir() / "resnet18-f37072fd.pth").write_bytes(tv18[1])
    assert resolve("torchvision://resnet18").is_file() and served.requests == []


def test_a_network_failure_is_one_sentence_with_the_url_the_cache_path_and_the_fix(served):
    url = "https://example.org/missing/model.pth"
    with pytest.raises(DownloadError) as info:
        resolve(url, progress=False)
    message = str(info.value)
    assert url in message and str(cache_dir() / "model.pth") in message and "by hand" in message
    assert "\n" not in message and _cached() == []


def test_progress_bar_shows_unless_turned_off(served, capsys):
    data = torch_bytes({"w": torch.ones(3)})
    url = served.add("https://example.org/p/" + hashed_name("a", data), data)
    resolve(url, progress=False)
    assert "%" not in capsys.readouterr().err
    url = served.add("https://example.org/p/" + hashed_name("b", data), data)
    resolve(url, progress=True)
    assert "100%" in capsys.readouterr().err


def test_scheme_paths_load_through_the_safe_reader(served, any_hash, tv18):
    served.add(TV18, tv18[1])
    state = load_state_dict_file("torchvision://resnet18")  # `resbone convert torchvision://resnet18 ...`
    assert all(torch.equal(state[k], v) for k, v in tv18[0].items())
    evil = served.add("https://example.org/e/evil.pth", torch_bytes({"w": torch.ones(1), "f": os.system}))
    with pytest.raises(ValueError, match="refused"):
        load_state_dict_file(evil)


def test_create_model_pretrained_resnet18(served, any_hash, tv18):
    served.add(TV18, tv18[1])
    model = create_model("resnet18", pretrained=True, progress=False)
    reference = torchvision.models.resnet18().eval()
    reference.load_state_dict(tv18[0])
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-4, atol=1e-4)
    assert len(served.requests) == 1


def test_proxy_from_the_environment_is_used(served, any_hash, monkeypatch):
    """Cadene's host is plain http: urllib sends the request to $http_proxy, here the local server."""
    data = torch_bytes({"w": torch.ones(3)})
    url = served.add("http://data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth", data)
    served.proxied = True
    monkeypatch.setenv("http_proxy", served.base)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen reads the proxy variables when it first runs
    assert resolve(url, progress=False).read_bytes() == data
    assert served.requests == ["/data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth"]


def test_a_file_timm_cached_through_huggingface_hub_is_used_with_no_request(served, tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    from safetensors.torch import save

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "models--timm--resnet18d.ra2_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(save({"w": torch.ones(2)}))
    assert resolve("hf-hub:timm/resnet18d.ra2_in1k") == repo / "snapshots" / "abc123" / "model.safetensors"
    assert served.requests == []
