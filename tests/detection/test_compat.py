"""FCOS's keys that resbone accepts and never reads (resbone.detection.compat): the table is exactly the keys
no code of resbone reads, setting one warns once naming it, FCOS's own files load without a warning, and
docs/config-keys.md shows the table."""
from __future__ import annotations

import re
import textwrap
import warnings
from pathlib import Path

import pytest

from resbone.detection.compat import FCOS_COMPAT_KEYS, SILENT_KEYS, compat_keys_markdown
from resbone.detection.config import load_cfg
from resbone.detection.defaults import detector_cfg, leaf_keys
from resbone.utils.configs import find_config, list_configs
from tests.detection.test_config import (
    FCOS_IMPRV_DCNV2_R_50_FPN_1X,
    FCOS_IMPRV_R_50_FPN_1X,
    FCOS_R_50_FPN_1X,
    FCOS_SYNCBN_BS32_C128_MS_MNV2_FPN_1X,
)

REPO = Path(__file__).resolve().parents[2]
# the modules that declare or list keys without reading them
DECLARING = {"detection/defaults.py", "engine/defaults.py", "classification/defaults.py", "detection/compat.py"}
NAME = r"[A-Z][A-Z0-9_]*"
# cfg.MODEL.FCOS.X, cfg["MODEL"]["RESNETS"], resnets["STEM_FUNC"], and dotted names in strings ("MODEL.FPN")
CHAIN = re.compile(rf"""(?:\.{NAME}\b|\[\s*["']{NAME}["']\s*\])+""")
DOTTED = re.compile(rf"""["']((?:{NAME}\.)*{NAME})["']""")


def _access_chains() -> list[list[str]]:
    chains = []
    for path in (REPO / "resbone").rglob("*.py"):
        if path.relative_to(REPO / "resbone").as_posix() in DECLARING:
            continue
        text = path.read_text()
        chains += [re.findall(NAME, m.group(0)) for m in CHAIN.finditer(text)]
        chains += [m.group(1).split(".") for m in DOTTED.finditer(text)]
    return chains


def _maybe_read_keys() -> set[str]:
    """Every declared key the code may read, over-approximated: `A.B` is reached when some access goes from A
    straight to B, or when A is accessed on its own (then kept in a variable) and B is accessed on a variable
    somewhere (`backbone["B"]`, `fcos.B`: B first in its chain)."""
    followers: dict[str, set[str]] = {}
    alone, seen, on_a_variable = set(), set(), set()
    for chain in _access_chains():
        seen.update(chain)
        alone.add(chain[-1])
        on_a_variable.add(chain[0])
        for parent, child in zip(chain, chain[1:]):
            followers.setdefault(parent, set()).add(child)

    def reached(key: str) -> bool:
        parts = key.split(".")
        return parts[0] in seen and all(child in followers.get(parent, ()) or
                                        (parent in alone and child in on_a_variable)
                                        for parent, child in zip(parts, parts[1:]))
    return {key for key in leaf_keys(detector_cfg()) if reached(key)}


def test_the_table_is_exactly_the_keys_no_code_reads():
    declared = set(leaf_keys(detector_cfg()))
    maybe_read = _maybe_read_keys()
    assert set(FCOS_COMPAT_KEYS) & maybe_read == set(), "listed as never read, but the code reads them"
    assert declared - maybe_read - set(FCOS_COMPAT_KEYS) == set(), "never read, but not in the table"
    assert "MODEL.FCOS.NUM_CLASSES" in maybe_read and "MODEL.RETINANET.USE_C5" in maybe_read  # the probe works
    assert {"MODEL.RPN.NMS_THRESH", "MODEL.RETINANET.NUM_CLASSES", "TEST.BBOX_AUG.SCALES"} <= set(FCOS_COMPAT_KEYS)
    assert all(FCOS_COMPAT_KEYS[key] == value for key, value in
               [("MODEL.RPN.NMS_THRESH", 0.7), ("MODEL.META_ARCHITECTURE", "GeneralizedRCNN"),
                ("MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 100)])  # maskrcnn-benchmark's defaults
    assert set(SILENT_KEYS) <= set(FCOS_COMPAT_KEYS)


def _messages(caught) -> list[str]:
    return [str(w.message) for w in caught if "has no effect in resbone" in str(w.message)]


def test_a_compat_key_set_on_the_command_line_warns_once_naming_it():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_cfg(None, ["MODEL.RPN.NMS_THRESH", "0.5", "MODEL.FCOS.NMS_TH", "0.5"])
    messages = _messages(caught)
    assert len(messages) == 1 and "MODEL.RPN.NMS_THRESH = 0.5" in messages[0] and "0.7" in messages[0]


def test_a_compat_key_set_in_a_file_warns_once_per_key(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent("""
        MODEL:
          MASK_ON: True
          ROI_HEADS:
            NMS: 0.3
            SCORE_THRESH: 0.05
        """))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_cfg(str(path), ["MODEL.ROI_HEADS.NMS", "0.4"])  # the file's key set again: still one warning
    messages = sorted(_messages(caught))
    assert len(messages) == 2, messages  # SCORE_THRESH is set to its default: no warning
    assert "MODEL.MASK_ON = True" in messages[0] and "MODEL.ROI_HEADS.NMS = 0.4" in messages[1]


FCOS_X_101_2X_BBOX_AUG = FCOS_IMPRV_DCNV2_R_50_FPN_1X + """
TEST:
  BBOX_AUG:
    ENABLED: False
    H_FLIP: True
    SCALES: (400, 500, 600, 700, 900, 1000, 1100, 1200)
    MAX_SIZE: 2000
    SCALE_H_FLIP: True
"""


@pytest.mark.parametrize("source", [FCOS_R_50_FPN_1X, FCOS_IMPRV_R_50_FPN_1X, FCOS_IMPRV_DCNV2_R_50_FPN_1X,
                                    FCOS_SYNCBN_BS32_C128_MS_MNV2_FPN_1X, FCOS_X_101_2X_BBOX_AUG,
                                    *list_configs("fcos/*")])
def test_fcos_own_files_load_without_a_warning(tmp_path, source):
    if "\n" in source:
        path = tmp_path / "fcos.yaml"
        path.write_text(source)
    else:
        path = find_config(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cfg(str(path))


def test_the_docs_page_shows_the_table():
    page = (REPO / "docs" / "config-keys.md").read_text()
    assert compat_keys_markdown() in page, "regenerate the table: python -c 'from resbone.detection.compat " \
                                           "import compat_keys_markdown as m; print(m())'"
    assert "config-keys.md" in (REPO / "docs" / "detection.md").read_text()
