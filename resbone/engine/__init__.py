"""The task-agnostic training engine: config merging, the loop and its hooks, checkpoints, resume, EMA, AMP,
DDP, logging. A task (resbone.detection, resbone.classification) supplies a resbone.engine.task.Task."""
