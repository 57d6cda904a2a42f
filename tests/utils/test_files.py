"""atomic_write / atomic_path / sweep_stale_temp_files: the old file survives every failure, no temp is left."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resbone.utils.files import atomic_path, atomic_write, sweep_stale_temp_files, temp_path


def test_a_finished_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with atomic_write(path, "w") as handle:
        handle.write("new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_write(path) as handle:
            handle.write(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_path_with_a_suffix_and_nothing_written_is_an_error(tmp_path):
    path = tmp_path / "plot.png"
    with atomic_path(path, suffix=".png") as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as handle:
            handle.write(b"png")
    assert path.read_bytes() == b"png"
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(tmp_path / "other.png"):
            pass
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]


def test_atomic_write_refuses_other_modes(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_sweep_removes_temp_files_of_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f"model_final.pth.tmp{dead_pid}"
        stale_png = tmp_path / f"curves.png.tmp{dead_pid}.png"
        running = tmp_path / f"model_0001000.pth.tmp{alive.pid}"
        mine = tmp_path / os.path.basename(temp_path(tmp_path / "metrics.jsonl"))
        unrelated = tmp_path / "notes.tmp"
        for p in (stale, stale_png, running, mine, unrelated):
            p.write_bytes(b"x")
        removed = sweep_stale_temp_files(tmp_path)
        assert sorted(removed) == sorted([str(stale), str(stale_png)])
        assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (running, mine, unrelated))
    finally:
        alive.kill()
        alive.wait()
    assert sweep_stale_temp_files(tmp_path / "missing") == []
