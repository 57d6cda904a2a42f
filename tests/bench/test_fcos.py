"""bench.fcos --quick runs end to end: every contender in every section, and resbone's eager detector, its
fast path and its onnxruntime export all give torchvision's detections (same weights). Timings are printed,
never asserted."""
from __future__ import annotations

import re

import pytest
import torch

from bench import fcos
from bench.int8 import engines
from tests.helpers.bench import parse_sections


@pytest.mark.slow
def test_quick_benchmark_prints_every_row_and_the_same_detections(capsys):
    threads = torch.get_num_threads()
    try:
        assert fcos.main(["--quick", "--no-compile", "--device", "cpu", "--threads", "1", "--int8"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    sections = parse_sections(out)
    assert {title: set(rows) for title, rows in sections.items()} == {
        "FCOS R-50-FPN inference, batch 1x3x128x128": {"torchvision eager", "resbone eager", "resbone fast path",
                                                        "onnxruntime"},
        "FCOS R-50-FPN network (backbone, FPN, head) float32 and int8 (CPU), batch 1x3x128x128": {
            "torchvision eager", "resbone eager", *(f"resbone int8 ({e})" for e in engines())},
        "FCOS R-50-FPN SGD train iteration, batch 1x3x128x128": {"torchvision eager", "resbone eager"},
        "FCOS R-18-FPN (demo config) SGD train iteration, batch 2x3x96x96": {"torchvision eager", "resbone eager"}}
    for contender in ("resbone eager vs torchvision eager", "resbone fast path vs resbone eager",
                      "onnxruntime vs resbone eager"):
        match = re.search(re.escape(contender) + r": (\d+) detections each; max \|box diff\| (\S+) px, "
                          r"max \|score diff\| (\S+), labels equal: True", out)
        assert match and int(match.group(1)) > 0, contender
        assert float(match.group(2)) < 1e-2 and float(match.group(3)) < 1e-4
    assert "int8 features: avx2" in out
