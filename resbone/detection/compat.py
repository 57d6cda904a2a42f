"""FCOS's config keys that resbone accepts and never reads, and the one warning for a value that would be lost.

FCOS's configuration is maskrcnn-benchmark's: besides the FCOS keys it declares the two-stage detectors'
sections (RPN, ROI heads, RetinaNet, FBNet, test-time augmentation ...). resbone declares them too, with
their defaults (resbone.detection.defaults), only so that FCOS's own YAML files load unchanged. A file or a
`KEY VALUE` override that sets one of them to anything but its default gets one warning naming the key
(detectron2 warns the same way about its deprecated keys), since the value changes nothing here.
Anchor: tianzhi0549/FCOS `fcos_core/config/defaults.py`. Proven by tests/detection/test_compat.py (the
table is exactly the keys no code of resbone reads; FCOS's own files load without a warning;
docs/config-keys.md is `compat_keys_markdown()`).
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from resbone.detection.defaults import detector_cfg, leaf_keys

__all__ = ["FCOS_COMPAT_KEYS", "SILENT_KEYS", "compat_keys_markdown", "warn_compat_keys"]

# Sections and keys of FCOS's tree that resbone's FCOS never reads, and the keys inside them that it does.
_UNREAD = ("MODEL.RPN_ONLY", "MODEL.MASK_ON", "MODEL.FCOS_ON", "MODEL.RETINANET_ON", "MODEL.KEYPOINT_ON",
           "MODEL.META_ARCHITECTURE", "MODEL.CLS_AGNOSTIC_BBOX_REG", "MODEL.BACKBONE.USE_GN", "MODEL.RPN",
           "MODEL.ROI_HEADS", "MODEL.ROI_BOX_HEAD", "MODEL.ROI_MASK_HEAD", "MODEL.ROI_KEYPOINT_HEAD",
           "MODEL.RETINANET", "MODEL.FBNET",
           "DATALOADER.ASPECT_RATIO_GROUPING", "TEST.EXPECTED_RESULTS", "TEST.EXPECTED_RESULTS_SIGMA_TOL",
           "TEST.BBOX_AUG", "PATHS_CATALOG")
_READ = ("MODEL.RETINANET.USE_C5", "TEST.BBOX_AUG.ENABLED")


def _compat_keys() -> dict[str, Any]:
    cfg = detector_cfg()
    table = {}
    for key in leaf_keys(cfg):
        if key not in _READ and any(key == name or key.startswith(name + ".") for name in _UNREAD):
            table[key] = _lookup(cfg, key)
    return table


def _lookup(cfg: Mapping[str, Any], key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


# key -> its default: the table of FCOS's keys accepted only so that FCOS's files load.
FCOS_COMPAT_KEYS: dict[str, Any] = _compat_keys()
# Keys that never warn, with the reason: FCOS's own files set them, and the value they set changes nothing in
# FCOS either (or describes what resbone builds anyway).
SILENT_KEYS: dict[str, str] = {
    "MODEL.RPN_ONLY": "every FCOS config sets True: FCOS is a one-stage (RPN-only) detector, which is what "
                      "resbone builds",
    **{f"TEST.BBOX_AUG.{name}": "FCOS's X-101 2x configs set it; FCOS reads it only when TEST.BBOX_AUG.ENABLED, "
                                "which resbone refuses" for name in ("H_FLIP", "SCALES", "MAX_SIZE", "SCALE_H_FLIP")},
}


def warn_compat_keys(cfg: Mapping[str, Any]) -> list[str]:
    """One warning per key of FCOS_COMPAT_KEYS (SILENT_KEYS aside) whose value in `cfg` is not its default;
    returns those keys."""
    changed = [key for key, default in FCOS_COMPAT_KEYS.items()
               if key not in SILENT_KEYS and _lookup(cfg, key) != default]
    for key in changed:
        warnings.warn(f"config key {key} = {_lookup(cfg, key)!r} has no effect in resbone: it is one of FCOS's "
                      f"keys accepted only so that FCOS's YAML files load (default {FCOS_COMPAT_KEYS[key]!r}; "
                      f"docs/config-keys.md lists them)", stacklevel=2)
    return changed


def compat_keys_markdown() -> str:
    """The table of docs/config-keys.md: every key of FCOS_COMPAT_KEYS with its default."""
    rows = [f"| `{key}` | `{default!r}` | {SILENT_KEYS.get(key, '')} |" for key, default in FCOS_COMPAT_KEYS.items()]
    return "\n".join(["| key | default | never warns because |", "|---|---|---|", *rows]) + "\n"
