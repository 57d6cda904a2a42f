"""The YAML configs shipped inside the package (resbone/configs/<task>/<name>.yaml), found by name.

As detectron2's `model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")`: a name is the
file's path under resbone/configs, with or without `.yaml`, so `resbone train fcos/shapes_R_18_FPN` works
from any directory and from an installed wheel. A path to an existing file is used as it is (and wins over a
shipped config of the same name). Proven by tests/utils/test_configs.py (names, paths, the close-name error)
and tests/test_wheel.py (the configs inside an installed wheel).
"""
from __future__ import annotations

import fnmatch
import os
from importlib import resources
from pathlib import Path

from resbone.utils.checks import close_matches

__all__ = ["config_dir", "find_config", "list_configs"]

_SUFFIXES = (".yaml", ".yml")


def config_dir() -> Path:
    """The folder of the shipped configs (inside the installed package)."""
    return Path(str(resources.files("resbone") / "configs"))


def list_configs(pattern: str = "*") -> list[str]:
    """Names of the shipped configs matching the shell-style `pattern` ('*', 'fcos/*'), sorted."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string such as 'fcos/*', got {pattern!r}")
    root = config_dir()
    names = (p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*") if p.suffix in _SUFFIXES)
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def find_config(name_or_path: str | os.PathLike) -> str:
    """The path of a config: `name_or_path` itself when that file exists, else the shipped config of that
    name ('fcos/shapes_R_18_FPN' or 'fcos/shapes_R_18_FPN.yaml'); a ValueError naming the close ones when
    neither exists."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"a config is a file path or a shipped config's name, got {name_or_path!r}")
    given = os.fspath(name_or_path)
    if os.path.isfile(given):
        return given
    name = given.replace(os.sep, "/")
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix in _SUFFIXES else name
    for suffix in _SUFFIXES if _is_name(stem) else ():
        shipped = config_dir() / f"{stem}{suffix}"
        if shipped.is_file():
            return str(shipped)
    names = list_configs()
    close = _close_names(stem, names)
    hint = f"did you mean {', '.join(close)}?" if close else \
        f"the shipped configs are {', '.join(names)}" if names else "this installation ships no configs"
    raise ValueError(f"{given!r} is neither a config file nor a shipped config name; {hint} "
                     f"(`resbone configs` lists them)")


def _is_name(stem: str) -> bool:
    """A relative name inside resbone/configs (not an absolute path, no '..')."""
    return bool(stem) and not os.path.isabs(stem) and ".." not in stem.split("/")


def _close_names(stem: str, names: list[str]) -> list[str]:
    # a path of the old layout (configs/ at the top) or a bare file name names one config exactly; else a typo
    exact = [n for n in names if stem.endswith("/" + n) or n.endswith("/" + stem)]
    if exact:
        return exact[:3]
    base = stem.rsplit("/", 1)[-1]
    return close_matches(stem, names) or [n for n in names if close_matches(base, [n.rsplit("/", 1)[-1]])][:3]
