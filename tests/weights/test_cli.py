"""`resbone weights download|verify` and `resbone list --pretrained`; docs/pretrained.md's table is the output of
`resbone list --pretrained --markdown`."""
from __future__ import annotations

from pathlib import Path

import torch

from resbone.cli import main
from resbone.weights import cache_dir
from tests.weights.conftest import torch_bytes

DOC = Path(__file__).resolve().parents[2] / "docs" / "pretrained.md"


def test_docs_table_is_the_commands_output(capsys):
    assert main(["list", "--pretrained", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    assert DOC.read_text().rstrip().endswith(table) and table.count("\n") > 60


def test_list_pretrained_with_a_pattern(capsys):
    assert main(["list", "--pretrained", "resnet18*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet18.mmcls_in1k", "resnet18.tv_in1k", "resnet18c.openmmlab_in1k",
                                               "resnet18d.ra2_in1k", "resnet18d.ra4_e3600_r224_in1k"]


def test_download_then_verify(served, any_hash, capsys):
    data = torch_bytes({"w": torch.ones(2)})
    served.add("https://download.pytorch.org/models/resnet18-f37072fd.pth", data)
    assert main(["weights", "verify", "resnet18"]) == 2
    assert "is not in the cache" in capsys.readouterr().err
    assert main(["weights", "download", "resnet18", "--no-progress"]) == 0
    assert main(["weights", "verify", "torchvision://resnet18"]) == 0
    assert str(cache_dir() / "resnet18-f37072fd.pth") in capsys.readouterr().out
    (cache_dir() / "resnet18-f37072fd.pth").write_bytes(data[:100])
    assert main(["weights", "verify", "resnet18"]) == 2
    assert "is damaged" in capsys.readouterr().err and len(served.requests) == 1
