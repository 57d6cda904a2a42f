"""bench.backbone --quick runs end to end: every contender in both sections, all of them (eager, the fast
path, compiled) giving torchvision's outputs with the same weights. Timings are printed, never asserted."""
from __future__ import annotations

import re

import pytest
import torch

from bench import backbone
from tests.helpers.bench import parse_sections

EAGER = {"torchvision eager", "timm eager", "resbone eager"}


def _run(capsys, *options: str) -> str:
    threads = torch.get_num_threads()
    try:  # one thread: on a shared 2-core machine more threads than free cores is 10x slower
        assert backbone.main(["--quick", "--arch", "resnet18", "--device", "cpu", "--threads", "1", *options]) == 0
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def _check(out: str, inference: set[str], train: set[str]) -> None:
    sections = parse_sections(out)
    assert list(sections) == ["resnet18 inference, batch 2x3x32x32", "resnet18 SGD train step, batch 2x3x32x32"]
    rows = list(sections.values())
    assert set(rows[0]) == inference and set(rows[1]) == train
    assert all(len(cells) == 5 and cells[4].endswith("%") for cells in rows[0].values())  # GFLOP/s, share of peak
    gap = float(re.search(r"max abs output difference .*: (\S+)", out).group(1))
    assert gap < 1e-4


def test_quick_benchmark_without_compiling_prints_every_row_and_equal_outputs(capsys):
    out = _run(capsys, "--no-compile", "--profile")
    _check(out, EAGER | {"resbone fast path"}, EAGER)
    assert "matrix-multiply peak measured here (float32 mm)" in out
    assert "top ops by self time, inference (resbone eager)" in out and "aten::" in out


@pytest.mark.slow
def test_quick_benchmark_with_the_compiled_contenders(capsys):
    out = _run(capsys)
    _check(out, EAGER | {"resbone fast path", "torchvision compiled"}, EAGER | {"resbone compiled"})


def test_quick_int8_section_beside_float_and_torchvision_int8(capsys):
    from bench.int8 import engines

    out = _run(capsys, "--no-compile", "--int8", "--profile")
    rows = parse_sections(out)["resnet18 int8 inference (CPU), batch 2x3x32x32"]
    assert set(rows) == {"torchvision eager", "torchvision int8 (x86)", *(f"resbone int8 ({e})" for e in engines())}
    assert "resbone int8 (x86): max |diff|" in out and "int8 features: avx2" in out
    table = out.split("int8 op by op")[1]  # both x86 graphs' kernels, op by op: 9 fused conv+ReLU each
    assert re.search(r"quantized::conv2d_relu\s+9\s+[\d.]+\s+9\s+[\d.]+", table)
