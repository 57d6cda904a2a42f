"""What the CPU offers int8 inference: its instruction sets (VNNI, AMX) and torch's quantized engines, printed
with every int8 figure, and the engine `resbone.deploy.quantize(backend="auto")` picks.

Anchor: torch's `x86` quantized engine, which itself dispatches convolutions to oneDNN on VNNI CPUs
(at::native::should_use_onednn_quant) and to fbgemm elsewhere. Reference test: tests/deploy/test_quantize.py
(the flags read from a /proc/cpuinfo written by hand).
"""
from __future__ import annotations

import os

import torch

__all__ = ["INT8_CPU_FLAGS", "cpu_int8_features", "cpu_int8_line", "cpu_name", "default_backend", "engines",
           "has_vnni"]

INT8_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_features(cpuinfo: str = "/proc/cpuinfo") -> dict[str, bool]:
    """Which int8-relevant instruction sets the CPU reports (x86 Linux; all False where unreadable)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {flag: flag in flags for flag in INT8_CPU_FLAGS}


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as /proc/cpuinfo gives it ('unknown CPU' where unreadable)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        "unknown CPU")
    except OSError:
        return "unknown CPU"


def cpu_int8_line() -> str:
    """One line for every printed figure: the CPU, its int8 features and torch's quantized engines."""
    shown = " ".join(f"{k}{'+' if v else '-'}" for k, v in cpu_int8_features().items())
    return (f"CPU: {cpu_name()}; int8 features: {shown}; {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
            f"threads; quantized engines {engines()}")


def engines() -> list[str]:
    """torch's quantized engines in this build."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def has_vnni() -> bool:
    """True where int8 multiply-adds accumulate in int32 without saturating (VNNI, AMX)."""
    features = cpu_int8_features()
    return features["avx512_vnni"] or features["avx_vnni"] or features["amx_int8"]


def default_backend(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The engine this CPU runs int8 networks fastest with (what backend="auto" picks): oneDNN where AMX int8
    exists (its AMX kernels; torch's own advice for Sapphire Rapids) or AVX-512 VNNI (measured on an AMD EPYC:
    resnet50 int8 under `onednn` 1.2-3.9% faster than under `x86` in three runs of bench.backbone --int8, `x86`
    already sending convolutions to oneDNN there but pooling, adds and linear to fbgemm), else `x86` (fbgemm's
    AVX2 kernels). bench.backbone --int8 times every engine side by side."""
    features = cpu_int8_features(cpuinfo)
    fast = features["amx_int8"] or (features["avx512_vnni"] and features["avx512f"])
    return "onednn" if fast and "onednn" in engines() else "x86"
