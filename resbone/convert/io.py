"""Reading and writing checkpoint files safely.

Reading never runs code from the file: `.pth/.pt/.bin/.ckpt` go through torch.load(weights_only=True),
`.safetensors` through safetensors, and Caffe2 / detectron2 `.pkl` pickles through an unpickler that
admits only numpy arrays and plain containers (anything else, e.g. `os.system`, is refused before it is
imported). Writing is atomic: a temporary file in the destination folder, fsync, then os.replace, so a
crash never leaves a half-written OUT, and OUT may never be the file being converted.

Reference tests: tests/convert/test_io.py (malicious pickle refused and not executed, truncated file,
directory, text file, round trips through every format, a failure mid-write leaves OUT untouched).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np
import torch

from resbone.convert.common import StateDict
from resbone.utils.files import atomic_write
from resbone.weights import has_scheme, resolve

__all__ = ["load_state_dict_file", "save_state_dict_file", "unwrap_state_dict", "FORMATS"]

FORMATS = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl")
# Wrappers that training frameworks put around the weights (torchvision/timm: none; mmcv: state_dict;
# detectron2 / maskrcnn-benchmark: model; some repos: net; Detectron pickles: blobs). The moving average
# of the weights comes first where a checkpoint holds one, as timm's load_checkpoint(use_ema=True) does:
# resbone's MODEL_EMA (model_ema) and timm's train.py (state_dict_ema). mmengine's EMAHook already swaps
# the average into state_dict.
_WRAPPERS = ("model_ema", "state_dict_ema", "state_dict", "model", "net", "blobs", "model_state", "module")
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes with protocol 2 (numpy's raw data)
}
_SAFE_DTYPE_PREFIXES = ("numpy.dtypes.",)  # numpy 2 pickles dtypes as numpy.dtypes.Float32DType


class _Refused(pickle.UnpicklingError):
    """The file asks for something that could run code."""


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module + ".").startswith(_SAFE_DTYPE_PREFIXES):
            return super().find_class(module, name)
        raise _Refused(f"it asks to import {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("it holds persistent references (a torch.save file?)")


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a checkpoint path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"checkpoint {str(p)!r} is a directory, not a checkpoint file "
                         f"(expected one of {', '.join(FORMATS)})")
    return p


def _sniff(p: Path) -> str:
    """The file's format from its first bytes (the suffix only separates Caffe2 pickles from torch's)."""
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch"  # torch.save's zip format
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"  # 8-byte little-endian header length, then the JSON header
    if head[:1] == b"\x80" or p.suffix in (".pkl", ".pickle"):
        # a pickle stream: a Caffe2 / detectron2 pickle, or a legacy (non-zip) torch.save file
        return "pickle" if p.suffix in (".pkl", ".pickle") else "torch"
    raise ValueError(f"{str(p)!r} is not a checkpoint: it is neither a torch.save zip, a pickle nor "
                     f"safetensors (first bytes {head[:8]!r}); expected one of {', '.join(FORMATS)}")


def load_state_dict_file(path: str | os.PathLike) -> StateDict:
    """Read a checkpoint file and return its state dict (name -> tensor), wrappers and `module.` removed.

    Never executes code stored in the file; a file that would need to is refused with a ValueError.
    A checkpoint address (torchvision://NAME, catalog://..., hf-hub:timm/NAME, https://...) is fetched into
    torch hub's cache first (resbone.weights.resolve)."""
    p = _check_path(resolve(path) if has_scheme(path) else path)
    kind = _sniff(p)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p), device="cpu")
        elif kind == "pickle":
            with open(p, "rb") as f:
                obj = _RestrictedUnpickler(f, encoding="latin1").load()
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not (isinstance(error, _Refused) or "Weights only load failed" in str(error)):
            raise ValueError(f"cannot read checkpoint {str(p)!r} ({kind} format): it is truncated or not a "
                             f"checkpoint ({_why(error)})") from None
        raise ValueError(f"refused to load {str(p)!r}: {_why(error)}. resbone reads only tensors, numpy arrays and "
                         "plain containers, so that opening a checkpoint cannot run code") from None
    except Exception as error:  # torch, zipfile, safetensors and pickle each raise their own kinds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read checkpoint {str(p)!r} ({kind} format): it is truncated or not a "
                         f"checkpoint ({reason})") from None
    try:
        return unwrap_state_dict(obj)
    except (TypeError, ValueError) as error:
        raise type(error)(f"checkpoint {str(p)!r}: {error}") from None


def _why(error: Exception) -> str:
    """The informative line of an unpickling refusal (torch's message is a page long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "asks to import" in line), lines[0] if lines else "")


def unwrap_state_dict(obj: Any) -> StateDict:
    """The state dict inside a checkpoint object: descends through `state_dict` / `model` / `net` /
    `blobs` wrappers (an EMA's `model_ema` / `state_dict_ema` first), drops a `module.` (DataParallel/DDP)
    prefix, turns numpy arrays into tensors and leaves out non-tensor entries (step counters, strings)."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[w] for w in _WRAPPERS if isinstance(obj.get(w), Mapping) and obj[w]), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    out: StateDict = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, (np.ndarray, np.generic)):
            if value.dtype == object:
                raise ValueError(f"entry {key!r} is a numpy array of Python objects, not numbers")
            value = np.array(value, copy=True, order="C")  # owns writable memory; keeps 0-d shapes
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            out[key] = value
    if not out:
        raise ValueError(f"no tensors found (top-level keys: {sorted(map(str, obj))[:8]})")
    if all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def save_state_dict_file(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, *,
                         source: str | os.PathLike | None = None, pickle_key: str = "model") -> Path:
    """Write `state_dict` to `path` atomically, in the format its suffix names: `.safetensors`,
    `.pth`/`.pt`/`.bin`/`.ckpt` (torch.save) or `.pkl` (a pickle of numpy arrays under `pickle_key`:
    'model' as detectron2 reads it, 'blobs' as Detectron / maskrcnn-benchmark read Caffe2 weights).
    `source`: the file the weights came from; writing over it is refused."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"output path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    p = Path(path)
    if p.is_dir():  # before the suffix: `resbone convert a.pth outdir/` is a directory, not a bad suffix
        raise ValueError(f"output {str(p)!r} is a directory; give a file name ending in one of {', '.join(FORMATS)}")
    if p.suffix not in FORMATS:
        raise ValueError(f"cannot tell the format of {str(p)!r} from its suffix {p.suffix!r}; "
                         f"allowed suffixes: {', '.join(FORMATS)}")
    if source is not None and p.exists() and Path(source).exists() and os.path.samefile(p, source):
        raise ValueError(f"refusing to overwrite the input checkpoint {str(source)!r}; choose another output path")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist")
    tensors = {k: v.detach().cpu() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if p.suffix == ".pkl" and (bad := [k for k, v in tensors.items() if v.dtype == torch.bfloat16]):
        raise TypeError(f"numpy has no bfloat16, so {bad[0]!r} cannot go into a .pkl; write .pth or .safetensors")
    with atomic_write(p, "wb") as f:
        _serialize(tensors, p.suffix, pickle_key, f)
        os.chmod(f.name, _file_mode(p))  # keep an existing OUT's mode, else what a plain open() would give
    return p


def _file_mode(p: Path) -> int:
    if p.exists():
        return p.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _serialize(tensors: dict[str, torch.Tensor], suffix: str, pickle_key: str, f: BinaryIO) -> None:
    if suffix == ".safetensors":
        from safetensors.torch import save

        # safetensors refuses tensors that share memory (tied weights, views): give each its own.
        f.write(save({k: v.clone().contiguous() for k, v in tensors.items()}, metadata={"format": "pt"}))
    elif suffix == ".pkl":
        arrays = {k: v.numpy() for k, v in tensors.items()}
        pickle.dump({pickle_key: arrays, "__author__": "resbone"}, f, protocol=4)
    else:
        torch.save(tensors, f)
