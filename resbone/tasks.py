"""The tasks a config can name (its TASK key), and the parts of each: config loading, the engine's Task, eval.

Anchor: detectron2 projects pick their trainer by config; here the config's TASK does (FCOS's own YAML files
have none and mean detection). It sits above the task packages and below the CLI, so the engine
(resbone.engine) never imports a task. Proven by tests/cli/test_engine_cli.py,
tests/classification/test_task.py and tests/reid/test_cli.py.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Iterable

from resbone.utils.checks import close_matches

__all__ = ["TASKS", "get_task", "load_cfg", "task_name"]

TASKS = ("detection", "classification", "reid")
DEFAULT_TASK = "detection"  # FCOS's YAML files name no task


def task_name(path: str | None = None, opts: Iterable[str] = ()) -> str:
    """The TASK a YAML file (with its _BASE_ files) and `KEY VALUE` overrides name; detection if none."""
    from resbone.engine.config import read_yaml

    opts = list(opts)
    name = read_yaml(path).get("TASK", DEFAULT_TASK) if path else DEFAULT_TASK
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "TASK":
            name = value
    if name not in TASKS:
        close = close_matches(name, TASKS, n=1)
        raise ValueError(f"TASK {name!r} is not a task resbone trains; choose one of {', '.join(TASKS)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    return name


def get_task(name: str) -> SimpleNamespace:
    """The parts of task `name`: load_cfg(path, opts), task (a resbone.engine.task.Task), evaluate_weights
    (cfg, weights, ...) and the module with its predict functions."""
    if name == "detection":
        from resbone.detection import config, predictor, task

        return SimpleNamespace(name=name, load_cfg=config.load_cfg, task=task.DetectionTask(),
                               evaluate_weights=predictor.evaluate_weights, predictor=predictor)
    if name == "classification":
        from resbone.classification import config, predictor, task

        return SimpleNamespace(name=name, load_cfg=config.load_cfg, task=task.ClassificationTask(),
                               evaluate_weights=predictor.evaluate_weights, predictor=predictor)
    if name == "reid":
        from resbone.reid import config, predictor, task

        return SimpleNamespace(name=name, load_cfg=config.load_cfg, task=task.ReidTask(),
                               evaluate_weights=predictor.evaluate_weights, predictor=predictor)
    raise ValueError(f"TASK {name!r} is not a task resbone trains; choose one of {', '.join(TASKS)}")


def load_cfg(path: str | None = None, opts: Iterable[str] = (), *, freeze: bool = True):
    """The config of the task the file names, with the overrides, checked (and frozen)."""
    opts = list(opts)
    return get_task(task_name(path, opts)).load_cfg(path, opts, freeze=freeze)
