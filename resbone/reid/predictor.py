"""Use a trained re-id model: evaluate a checkpoint (rank-1/5/10, mAP, ranked lists), or embed a folder of images.

The library calls behind `resbone eval` for a re-id config and `resbone reid extract`; the weights are a
`resbone train` checkpoint (its identity count is read from it) or any dialect resbone.convert reads.
Embeddings are the eval-mode output (after the BNNeck), as the evaluation ranks with and as
resbone.deploy.onnx exports. Proven by tests/reid/test_cli.py (eval and extract against the model itself,
ONNX against onnxruntime).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch import nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from resbone.engine.accelerate import accelerate_as_configured
from resbone.engine.checkpoint import check_weights_file, load_trained_weights, recorded_class_names
from resbone.engine.runtime import start_process
from resbone.reid.data import ReidImages, ReidItem, read_reid_folder, reid_transforms
from resbone.reid.evaluation import evaluate_sets, gather_features
from resbone.reid.task import build_reid_model
from resbone.utils.files import atomic_path, atomic_write

__all__ = ["EMBEDDING_SUFFIXES", "EvalResults", "Embeddings", "evaluate_weights", "extract_embeddings",
           "load_reid_model", "save_embeddings"]

logger = logging.getLogger("resbone")
EMBEDDING_SUFFIXES = (".npy", ".pt")


class EvalResults(dict):
    """{folder: metrics}; `partial_weights` names the tensors left at their initial values (or None)."""

    partial_weights: str | None = None


class Embeddings:
    """`features` (N, C) float32 of the images `files` (in that order); `partial_weights` as EvalResults'."""

    def __init__(self, features: torch.Tensor, files: list[str], partial_weights: str | None = None) -> None:
        self.features, self.files, self.partial_weights = features, files, partial_weights


def load_reid_model(cfg, weights: str, *, allow_missing: bool = False) -> tuple[nn.Module, str | None]:
    """The ReidModel of `cfg` with `weights`, in eval mode, and the problems of partial weights (refused unless
    `allow_missing`). The identity count is the checkpoint's, else that of DATASETS.TRAIN."""
    check_weights_file(weights)
    names = recorded_class_names(weights)
    if names is None:
        if not cfg.DATASETS.TRAIN:
            raise ValueError(f"{weights} records no identities and DATASETS.TRAIN is empty; give the folder the "
                             "model was trained on (DATASETS.TRAIN) for the classifier's size")
        names = read_reid_folder(cfg.DATASETS.TRAIN, cfg.DATASETS.NAMING)["train"]
        names = sorted({item.label for item in names})
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHT, cfg.MODEL.PRETRAINED = "", False  # `weights` replace them, as the other tasks' --weights do
    model = build_reid_model(cfg, len(names))
    partial = load_trained_weights(model, weights, allow_missing=allow_missing,
                                   what=f"the re-id {cfg.MODEL.NAME} with {len(names)} identities this config builds")
    return model.eval(), partial


def _placed(cfg, weights: str, allow_missing: bool, threads: int | None) -> tuple[nn.Module, torch.device, str | None]:
    device = start_process(cfg, threads=threads)
    model, partial = load_reid_model(cfg, weights, allow_missing=allow_missing)
    model = accelerate_as_configured(model.to(device), cfg, method="forward")
    return model, device, partial


def evaluate_weights(cfg, weights: str, *, allow_missing: bool = False, threads: int | None = None,
                     out_dir: str | None = None) -> EvalResults:
    """rank-1/5/10 and mAP of a checkpoint on every DATASETS.TEST folder (ranked-list PNGs into `out_dir`)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty; name the re-id folders to evaluate, e.g. "
                         "DATASETS.TEST \"('datasets/reid',)\"")
    model, device, partial = _placed(cfg, weights, allow_missing, threads)
    results = EvalResults(evaluate_sets(cfg, model, device, out_dir=out_dir, progress=bool(cfg.SOLVER.PROGRESS_BAR)))
    results.partial_weights = partial
    return results


def _image_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder; give a folder of images to embed")
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(IMG_EXTENSIONS))
    if not files:
        raise ValueError(f"folder {folder} holds no image ({', '.join(IMG_EXTENSIONS)})")
    return files


def extract_embeddings(cfg, weights: str, folder: str, *, allow_missing: bool = False,
                       threads: int | None = None) -> Embeddings:
    """The embedding (after the BNNeck) of every image under `folder` (searched recursively, sorted by path),
    at INPUT.SIZE with the evaluation transform."""
    files = _image_files(folder)
    model, device, partial = _placed(cfg, weights, allow_missing, threads)
    images = ReidImages([ReidItem(path, -1, 0, -1) for path in files], reid_transforms(tuple(cfg.INPUT.SIZE),
                                                                                        train=False))
    features = gather_features(model, images, device, batch_size=cfg.TEST.IMS_PER_BATCH,
                               num_workers=cfg.DATALOADER.NUM_WORKERS)
    return Embeddings(features, files, partial)


def save_embeddings(embeddings: Embeddings, path: str, *, relative_to: str | None = None) -> list[str]:
    """Write the features to `path`, atomically: `.pt` a dict {'embeddings': (N, C) tensor, 'files': [...]}
    (torch.load(weights_only=True) reads it); `.npy` the (N, C) float32 array, and the file names one per line
    in the `.txt` beside it. File names are relative to `relative_to` when given. Returns the paths written."""
    suffix = os.path.splitext(path)[1]
    if suffix not in EMBEDDING_SUFFIXES:
        raise ValueError(f"--out must end in {' or '.join(EMBEDDING_SUFFIXES)}, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"--out {path} is a folder; give a file name such as embeddings{suffix}")
    files = [os.path.relpath(f, relative_to) if relative_to else f for f in embeddings.files]
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if suffix == ".pt":
        with atomic_write(path) as handle:
            torch.save({"embeddings": embeddings.features, "files": files}, handle)
        return [path]
    names = os.path.splitext(path)[0] + ".txt"
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, embeddings.features.numpy().astype(np.float32))
    with atomic_write(names, "w") as handle:
        handle.write("".join(f"{name}\n" for name in files))
    return [path, names]
