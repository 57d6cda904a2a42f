"""bench.timing: the table's arithmetic against hand-computed values, the interleaving order, the profiler's
top ops. Nothing here times anything that is asserted."""
from __future__ import annotations

import torch

from bench.timing import Section, section_table, time_interleaved, top_ops
from tests.helpers.bench import parse_sections


def test_table_gives_ratios_throughput_and_share_of_peak_as_computed_by_hand():
    sections = [Section("resnet inference", 4, {"torchvision eager": 0.2, "resbone fast path": 0.08}, flops=2e9),
                Section("train", 2, {"torchvision eager": 1.0, "resbone compiled": 2.0})]
    parsed = parse_sections(section_table(sections, peak_flops=50e9))
    assert parsed["resnet inference"]["torchvision eager"] == ["200.0", "1.00x", "20.0", "10.0", "20.0%"]
    assert parsed["resnet inference"]["resbone fast path"] == ["80.0", "2.50x", "50.0", "25.0", "50.0%"]
    assert parsed["train"]["resbone compiled"] == ["2000.0", "0.50x", "1.0"]  # slower: below 1.00x


def test_interleaving_runs_warmup_then_rotates_the_first_contender():
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    medians = time_interleaved(steps, warmup=1, repeats=3, device=torch.device("cpu"))
    assert calls == list("abc" "abc" "bca" "cab")
    assert set(medians) == set("abc") and all(seconds >= 0 for seconds in medians.values())


def test_top_ops_name_the_ops_a_step_spends_its_time_in():
    a = torch.randn(256, 256)
    table = top_ops(lambda: [torch.mm(a, a) for _ in range(3)], torch.device("cpu"), rows=3)
    assert "aten::mm" in table.split("Self CPU time total")[0]
