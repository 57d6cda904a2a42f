"""bench.backbone --quick runs end to end: three rows, torchvision the 1.00x reference, and the three
resnet50s (same weights) give the same outputs. Timings are printed, never asserted."""
from __future__ import annotations

import re

import pytest
import torch

from bench import backbone


@pytest.mark.slow
def test_quick_benchmark_prints_the_table(capsys):
    threads = torch.get_num_threads()
    try:  # one thread: on a shared 2-core machine more threads than free cores is 10x slower
        assert backbone.main(["--quick", "--device", "cpu", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["resbone"],
            ["torchvision"], ["timm"])}
    assert set(rows) == {"resbone", "torchvision", "timm"}
    assert rows["torchvision"][2] == "1.00x" and rows["torchvision"][4] == "1.00x"
    gap = float(re.search(r"max abs output difference .*: (\S+)", out).group(1))
    assert gap < 1e-4
