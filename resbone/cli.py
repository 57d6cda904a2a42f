"""The `resbone` command: a thin layer over library calls a user could make themselves.

Each command has one `_add_<name>` function that declares its arguments and a `_run_<name>` that calls
the library; nothing here computes anything the library does not expose.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


# ---- summary / list (analysis) -------------------------------------------------------------------
def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="the architecture table of a model (shapes, strides, params, MACs, RF)")
    p.add_argument("name", help="a registered model name (see `resbone list`)")
    p.add_argument("--input-size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model argument, e.g. --set last_stride=1 (value parsed as YAML)")
    p.set_defaults(func=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    raise NotImplementedError("summary: being written by the analysis developer")


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="registered model names, with wildcards")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    from resbone.models.registry import list_models

    for name in list_models(args.pattern):
        print(name)
    return 0


# ---- convert (checkpoints) ------------------------------------------------------------------------
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint between dialects")
    p.set_defaults(func=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    raise NotImplementedError("convert: being written by the convert developer")


# ---- data / train / eval / predict (detection engine) ---------------------------------------------
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate datasets (the synthetic shapes set)")
    p.set_defaults(func=_run_data)


def _run_data(args: argparse.Namespace) -> int:
    raise NotImplementedError("data: being written by the engine developer")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector from a config")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train: being written by the engine developer")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a detector (COCO AP)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError("eval: being written by the engine developer")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="draw a detector's boxes on images")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError("predict: being written by the engine developer")


# ---- entry point ----------------------------------------------------------------------------------
_COMMANDS = (_add_summary, _add_list, _add_convert, _add_data, _add_train, _add_eval, _add_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resbone", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"resbone {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
