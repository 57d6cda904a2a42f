"""Training engine: config (FCOS's keys), solver, checkpoints, the train / eval loop, several processes."""
from resbone.engine.config import get_cfg, load_cfg

__all__ = ["get_cfg", "load_cfg"]
