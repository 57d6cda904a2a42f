"""`resbone weights download|verify NAME` and `resbone list --pretrained`: library calls of resbone.weights.

NAME is a model (its default tag), 'model.tag', or an address (torchvision://resnet50,
catalog://ImageNetPretrained/MSRA/R-50, hf-hub:timm/NAME, https://...). Reference test: tests/weights/test_cli.py.
"""
from __future__ import annotations

import argparse


def _spec(name: str):
    from resbone.weights import get_weights, has_scheme

    return name if has_scheme(name) else get_weights(name)


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="fill or check torch hub's cache of published weights ahead of time")
    p.add_argument("action", choices=("download", "verify"),
                   help="download: fetch into $TORCH_HOME/hub/checkpoints (nothing if cached); verify: check the "
                        "cached file's hash and completeness, no network")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="a model (its default tag), model.tag (resbone list --pretrained), or an address such as "
                        "torchvision://resnet50 or catalog://ImageNetPretrained/MSRA/R-50")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_weights)


def _run_weights(args: argparse.Namespace) -> int:
    from resbone.weights import resolve, verify

    for name in args.names:
        spec = _spec(name)
        path = resolve(spec, progress=not args.no_progress) if args.action == "download" else verify(spec)
        print(f"{name}: {path}")
    return 0


def run_list_pretrained(pattern: str, markdown: bool) -> int:
    """`resbone list --pretrained [PATTERN] [--markdown]`: 'model.tag' names, or the docs' table of them."""
    from resbone.weights import list_pretrained, markdown_table

    print(markdown_table(pattern) if markdown else "\n".join(list_pretrained(pattern)))
    return 0


WEIGHTS_COMMANDS = (_add_weights,)
