"""bench.fcos --quick runs end to end: two rows, torchvision the 1.00x reference, and the two detectors
(same weights) give the same detections. Timings are printed, never asserted."""
from __future__ import annotations

import re

import pytest

from bench import fcos


@pytest.mark.slow
def test_quick_benchmark_prints_the_table(capsys):
    assert fcos.main(["--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] in (["resbone"], ["torchvision"])}
    assert set(rows) == {"resbone", "torchvision"}
    assert rows["torchvision"][2] == "1.00x" and rows["torchvision"][4] == "1.00x"
    match = re.search(r"(\d+) detections each; max \|box diff\| (\S+) px, max \|score diff\| (\S+), "
                      r"labels equal: True", out)
    assert match and int(match.group(1)) > 0
    assert float(match.group(2)) < 1e-2 and float(match.group(3)) < 1e-4
