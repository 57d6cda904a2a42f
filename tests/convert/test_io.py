"""Reading never runs code from a checkpoint, bad files give errors that name them, every format
round-trips bit-exactly, and writing is atomic (OUT is either the old file or the whole new one; IN is
never overwritten)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from resbone.convert import io as convert_io
from resbone.convert import load_state_dict_file, save_state_dict_file
from tests.helpers.checkpoints import assert_identical, random_state_dict


class _RunsCode:
    """Unpickling this calls os.system(command): the classic malicious checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _payload(marker: Path) -> _RunsCode:
    return _RunsCode(f"touch {marker}")


def test_payload_is_live(tmp_path):
    """Control: plain pickle.loads of the payload really runs the command (so the refusals below prove
    something); the loader's refusals then leave no marker."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps({"w": _payload(marker)}))
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_code_running_pickle_is_refused_and_not_executed(tmp_path, suffix):
    marker = tmp_path / "ran"
    path = tmp_path / f"evil{suffix}"
    payload = {"conv1.weight": np.zeros((2, 3), np.float32), "evil": _payload(marker)}
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps({"blobs": payload}, protocol=2))
    else:
        torch.save({"state_dict": {"conv1.weight": torch.zeros(2), "evil": _payload(marker)}}, path)
    with pytest.raises(ValueError, match=rf"refused to load .*evil\{suffix}.*system"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_truncated_files_are_named(tmp_path):
    sd = random_state_dict("plain18")
    for suffix in (".pth", ".safetensors", ".pkl"):
        path = save_state_dict_file(sd, tmp_path / f"full{suffix}")
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(ValueError, match=rf"cut\{suffix}.*truncated or not a checkpoint"):
            load_state_dict_file(cut)


def test_directory_text_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path.name}.*is a directory"):
        load_state_dict_file(tmp_path)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.pth.*is not a checkpoint"):
        load_state_dict_file(text)
    text_pkl = tmp_path / "notes.pkl"
    text_pkl.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.pkl"):
        load_state_dict_file(text_pkl)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_state_dict_file(tmp_path / "absent.pth")
    no_tensors = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "name": "x"}, no_tensors)
    with pytest.raises(ValueError, match=r"meta\.pth.*no tensors"):
        load_state_dict_file(no_tensors)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors", ".pkl"])
def test_every_format_round_trips_bit_exactly(tmp_path, suffix):
    sd = random_state_dict("frozen_bn18")
    sd["fc.weight"] = torch.randn(4, 4).half()  # dtypes survive
    path = save_state_dict_file(sd, tmp_path / f"w{suffix}")
    assert_identical(load_state_dict_file(path), sd)
    assert [p.name for p in tmp_path.iterdir()] == [f"w{suffix}"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_wrappers_and_ddp_prefix_are_removed(tmp_path):
    sd = random_state_dict("plain18")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "meta": {"epoch": 1}}, tmp_path / "a.pth")
    assert_identical(load_state_dict_file(tmp_path / "a.pth"), sd)
    arrays = {k: v.numpy() for k, v in sd.items()}
    (tmp_path / "d2.pkl").write_bytes(pickle.dumps({"model": arrays, "__author__": "x", "matching_heuristics": True}))
    assert_identical(load_state_dict_file(tmp_path / "d2.pkl"), sd)


def test_legacy_python2_style_caffe2_pickle(tmp_path):
    """Detectron's MSRA pickles: {'blobs': {name: ndarray}} at protocol 2, read with latin1."""
    blobs = {"conv1_w": np.random.rand(4, 3, 7, 7).astype(np.float32), "res_conv1_bn_s": np.ones(4, np.float32)}
    (tmp_path / "R-50.pkl").write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    loaded = load_state_dict_file(tmp_path / "R-50.pkl")
    assert torch.equal(loaded["conv1_w"], torch.from_numpy(blobs["conv1_w"]))


def test_failure_mid_write_leaves_out_untouched(tmp_path, monkeypatch):
    """Simulated crash after the bytes are written but before the file is committed: OUT keeps its old
    content and the temporary file is removed."""
    out = tmp_path / "out.pth"
    out.write_bytes(b"old weights")

    def crash(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(convert_io.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        save_state_dict_file(random_state_dict("plain18"), out)
    assert out.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pth"]


def test_interrupt_during_serialisation_leaves_out_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out.safetensors"
    save_state_dict_file(random_state_dict("plain18", seed=1), out)
    before = out.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_io, "_serialize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_state_dict_file(random_state_dict("plain18", seed=2), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]


def test_refuses_to_overwrite_its_input(tmp_path):
    src = save_state_dict_file(random_state_dict("plain18"), tmp_path / "in.pth")
    before = src.read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        save_state_dict_file({}, tmp_path / "." / "in.pth", source=src)
    os.link(src, tmp_path / "hardlink.pth")
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        save_state_dict_file({}, tmp_path / "hardlink.pth", source=src)
    assert src.read_bytes() == before


def test_bad_output_paths(tmp_path):
    with pytest.raises(ValueError, match=r"suffix '\.h5'.*\.safetensors"):
        save_state_dict_file({}, tmp_path / "w.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_state_dict_file({}, tmp_path / "no" / "w.pth")


def test_format_is_read_from_the_content_not_the_suffix(tmp_path):
    sd = random_state_dict("plain18")
    save_state_dict_file(sd, tmp_path / "w.safetensors").rename(tmp_path / "w.pth")
    assert_identical(load_state_dict_file(tmp_path / "w.pth"), sd)
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert_identical(load_state_dict_file(tmp_path / "legacy.pt"), sd)


_WRITER = """
import sys, torch
from resbone.convert import save_state_dict_file
sd = {f"w{i}": torch.full((256, 1024), float(i)) for i in range(16)}  # 16 MiB
print("ready", flush=True)
while True:
    save_state_dict_file(sd, sys.argv[1])
"""


@pytest.mark.slow
def test_killed_writer_never_leaves_a_partial_out(tmp_path):
    """A process killed (SIGKILL) while it rewrites OUT in a loop leaves OUT either as it was or complete."""
    import subprocess
    import sys
    import time

    out = tmp_path / "out.pth"
    out.write_bytes(b"old weights")
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).parents[2])
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(0.2)  # some writes done, one in flight
    child.kill()
    child.wait()
    if out.read_bytes() != b"old weights":
        loaded = load_state_dict_file(out)
        assert len(loaded) == 16 and all(torch.all(loaded[f"w{i}"] == i) for i in range(16))


def test_an_output_directory_is_named_as_a_directory(tmp_path):
    # `resbone convert in.pth outdir/` used to say "cannot tell the format ... from its suffix ''"
    (tmp_path / "outdir").mkdir()
    with pytest.raises(ValueError, match=r"outdir' is a directory; give a file name"):
        save_state_dict_file(random_state_dict("plain18"), str(tmp_path / "outdir") + "/")
    assert list((tmp_path / "outdir").iterdir()) == []
