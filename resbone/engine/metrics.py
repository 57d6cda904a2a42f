"""A run's records: metrics.jsonl (one JSON object per logged iteration or evaluation) and
eval_results.json, written so that a killed run never leaves a file a reader cannot parse.

Proven by tests/engine/test_trainer.py (resume drops a line cut short, records are not doubled).
"""
from __future__ import annotations

import json
import os

from resbone.utils.files import atomic_write

__all__ = ["append_records", "read_metrics", "truncate_records", "write_json"]


def read_metrics(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:  # blank, or cut short by a killed run
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def append_records(path: str, records: list[dict]) -> None:
    # appending (not replacing) is what keeps a long log cheap; a line cut short by a kill is skipped by readers
    with open(path, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def write_json(path: str, data) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=2)


def truncate_records(path: str, iteration: int) -> None:
    """Keep only the training records up to `iteration` (0: none)."""
    if not os.path.isfile(path):
        return
    lines = []
    with open(path) as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short when the interrupted run was killed
                continue
            if isinstance(record, dict) and record.get("iter", 0) <= iteration and "dataset" not in record:
                lines.append(line if line.endswith("\n") else line + "\n")
    with atomic_write(path, "w") as handle:
        handle.writelines(lines)
