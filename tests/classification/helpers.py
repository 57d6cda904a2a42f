"""Small image-folder sets for the classification tests (the generated textures set at 32 px)."""
from __future__ import annotations

from resbone.classification.config import load_cfg
from resbone.classification.data.textures import generate_textures


def tiny_textures(root, per_class: int = 2, val: int = 1) -> dict[str, str]:
    return generate_textures(str(root), num_train=per_class, num_val=val, image_size=32, seed=1)


def tiny_cfg(data: dict[str, str], output_dir: str, *opts: str):
    return load_cfg(None, [
        "MODEL.NAME", "resnet18", "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", data["train"],
        "DATASETS.TEST", f"('{data['val']}',)", "INPUT.SIZE", "32", "INPUT.CROP_PCT", "1.0",
        "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1",
        "SOLVER.PROGRESS_BAR", "False", "DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "6",
        "OUTPUT_DIR", output_dir, *opts])
