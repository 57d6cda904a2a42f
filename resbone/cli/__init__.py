"""The `resbone` command: a thin layer over library calls a user could make themselves.

Each command has one `_add_<name>` function that declares its arguments and a `_run_<name>` that calls
the library; nothing here computes anything the library does not expose.

The command, unlike the library, sets the process's OpenMP policy: idle threads sleep instead of spinning
(OMP_WAIT_POLICY=PASSIVE unless the user set it). libgomp reads it once, when torch loads it, so it is set
here, before anything imports torch (`import resbone` imports nothing heavy). With one other busy process on
a 2-core machine an R-18 detector's step went from 0.96 s (spinning) to 0.50 s, at about the same speed
alone; a model of small ops pays for the wake-ups, which is why `make demo` runs one thread (README:
threads). Proven by tests/test_imports.py.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from typing import Sequence

import resbone
from resbone.cli.quantize import QUANTIZE_COMMANDS
from resbone.cli.reid import REID_COMMANDS
from resbone.cli.tasks import TASK_COMMANDS
from resbone.cli.weights import WEIGHTS_COMMANDS, run_list_pretrained


# ---- summary / list (analysis) -------------------------------------------------------------------
def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="the architecture table of a model (shapes, strides, params, MACs, RF)")
    p.add_argument("name", help="a registered model name (see `resbone list`)")
    p.add_argument("--input-size", nargs=2, type=int, default=[224, 224], metavar=("H", "W"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model argument, e.g. --set last_stride=1 (value parsed as YAML)")
    p.set_defaults(func=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    from resbone.analysis.summary import format_table, summarize

    overrides = _parse_model_overrides(args.set)
    print(format_table(summarize(args.name, tuple(args.input_size), model_kwargs=overrides)))
    return 0


def _parse_model_overrides(items: Sequence[str]) -> dict:
    """`key=value` strings -> kwargs; values are YAML (`1`, `[1, 2, 2, 1]`, `{type: GN}`), and `None`
    is accepted for YAML's `null` because the model arguments are written that way in Python."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--set expects KEY=VALUE with KEY a model argument name, got {item!r} "
                             f"(e.g. --set last_stride=1)")
        try:
            value = None if text.strip() == "None" else yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"--set {item!r}: the value {text!r} is not valid YAML ({error})") from None
        overrides[key.strip()] = value
    return overrides


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="registered model names, with wildcards")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'resnet5*'")
    p.add_argument("--markdown", action="store_true",
                   help="print a markdown table with each model's params and GMACs at 224x224")
    p.add_argument("--pretrained", action="store_true", help="the published weights' model.tag names instead")
    p.set_defaults(func=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    from resbone.analysis.summary import matching_models, model_table_markdown

    if args.pretrained:
        return run_list_pretrained(args.pattern, args.markdown)
    names = matching_models(args.pattern)
    print(model_table_markdown(names) if args.markdown else "\n".join(names))
    return 0


# ---- export (deploy) -------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model, an FCOS detector or a re-id model as ONNX (weights, folded "
                                      "norms)")
    p.add_argument("name", help="a registered model name (see `resbone list`), or a detector's or re-id model's "
                                "config: a YAML file or a shipped config's name (see `resbone configs`)")
    p.add_argument("output", metavar="OUT", help="the .onnx file to write (atomically)")
    p.add_argument("--checkpoint", default=None, help="weights to load first, in any dialect resbone.convert reads")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default 224 224 / a detector's max")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model argument, e.g. --set num_classes=None (YAML value), or a detector's config key")
    p.add_argument("--fuse", action="store_true", help="fold BatchNorm / FrozenBN into the convs first")
    p.add_argument("--embedding", action="store_true", help="a backbone's pooled last map out (re-id descriptor)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from resbone.deploy import export_input_size, export_onnx, fuse_conv_norm
    from resbone.factory import create_model
    from resbone.utils.extras import require_extra

    require_extra("onnx", extra="deploy", purpose="resbone export (ONNX)")  # torch's exporter needs it

    # an FCOS detector or a re-id model: its config (a YAML file, or a shipped config's name task/name), then a
    # checkpoint
    default_size = None
    if args.name.endswith((".yaml", ".yml")) or "/" in args.name or os.path.isfile(args.name):
        from resbone.tasks import task_name
        from resbone.utils.configs import find_config
        config, opts = find_config(args.name), [part for item in args.set for part in item.split("=", 1)]
        if task_name(config, opts) == "reid":
            from resbone.cli.reid import reid_model_for_export
            model, default_size = reid_model_for_export(config, opts, args.checkpoint)
        else:
            from resbone.detection.config import load_cfg
            from resbone.detection.detector import build_detector
            from resbone.detection.predictor import load_detector
            cfg = load_cfg(config, opts)
            model = load_detector(cfg, args.checkpoint)[0] if args.checkpoint else build_detector(cfg)
    else:
        model = create_model(args.name, checkpoint=args.checkpoint, **_parse_model_overrides(args.set))
    if args.fuse:
        model = fuse_conv_norm(model)
    size = tuple(args.input_size or default_size or export_input_size(model))
    path = export_onnx(model, args.output, input_size=size, embedding=args.embedding)
    print(f"wrote {path} ({args.name}, input 1x{getattr(model, 'in_channels', 3)}x{size[0]}x{size[1]}, dynamic batch)")
    return 0


# ---- configs (the YAML files shipped in the package) ------------------------------------------------
def _add_configs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configs", help="the configs shipped with resbone, by name (train/eval/predict take the name)")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. 'fcos/*'")
    p.add_argument("--path", action="store_true", help="print the configs' file paths instead (to copy and edit one)")
    p.set_defaults(func=_run_configs)


def _run_configs(args: argparse.Namespace) -> int:
    from resbone.utils.configs import find_config, list_configs

    names = list_configs(args.pattern)
    if not names:
        raise ValueError(f"no shipped config matches {args.pattern!r}; the configs are "
                         f"{', '.join(list_configs()) or 'none (this installation ships no configs)'}")
    print("\n".join(find_config(n) if args.path else n for n in names))
    return 0


# ---- convert (checkpoints) ------------------------------------------------------------------------
def _add_convert(sub: argparse._SubParsersAction) -> None:
    from resbone.convert import DIALECTS

    p = sub.add_parser("convert", help="convert a checkpoint between dialects",
                       description="Rename a checkpoint's weights from one ecosystem's names to another's "
                                   "(through resbone's) and write .pth/.pt/.safetensors/.pkl atomically.")
    p.add_argument("input", metavar="IN", help="checkpoint to read (.pth .pt .bin .ckpt .safetensors .pkl)")
    p.add_argument("output", metavar="OUT", help="file to write; its suffix picks the format; never IN")
    p.add_argument("--to", dest="dst", required=True, metavar="DIALECT", help=", ".join(DIALECTS))
    p.add_argument("--from", dest="src", default="auto", metavar="DIALECT", help="default: detect from the keys")
    p.add_argument("--arch", default=None, metavar="NAME",
                   help="a registered model name: check that the weights load into it (strict) before writing; "
                        "needed to read mmdet plugins, which mmdet names by type and resbone by position")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --arch: a model argument (YAML), e.g. --set num_classes=751 or --set \"plugins=[...]\"")
    p.add_argument("--eps", type=float, default=None,
                   help="caffe2 only: eps of the FrozenBN the affine BN maps to / is folded from (default 1e-5)")
    p.add_argument("--prefix", default=None,
                   help="mmdet only: prefix for a backbone's keys, e.g. 'backbone.' (default none)")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="convert weights holding NaN / Inf (refused by default)")
    p.set_defaults(func=_run_convert)


def _convert_options(args: argparse.Namespace, src: str, dst: str) -> dict:
    """--eps / --prefix as dialect options; a flag neither side takes is an error, not ignored."""
    from resbone.convert import DIALECTS

    options = {}
    for name in ("eps", "prefix"):
        value = getattr(args, name)
        if value is None:
            continue
        readers = {d.name for d in DIALECTS.values() if name in d.read_options}
        writers = {d.name for d in DIALECTS.values() if name in d.write_options}
        if src not in readers and dst not in writers:
            where = f"when reading or writing {', '.join(sorted(readers | writers))}" if readers \
                else f"to --to {', '.join(sorted(writers))}"
            raise ValueError(f"--{name} applies {where} only, not {src!r} -> {dst!r}")
        options[name] = value
    return options


def _check_arch(args: argparse.Namespace, model, state_dict: dict, src: str, options: dict) -> None:
    """--arch: the weights must load strict into the named model, else one error with advice a user can follow."""
    from resbone.convert import DIALECTS, load_checkpoint

    read = {k: v for k, v in options.items() if k in DIALECTS[src].read_options}
    report = load_checkpoint(model, state_dict, dialect=src, strict=False, allow_nonfinite=args.allow_nonfinite,
                             **read)
    if not report.ok:
        raise ValueError(f"{args.input} does not load into --arch {args.arch} ({src}): {report.problems()}. Name the "
                         f"model the weights were trained as (--arch NAME, `resbone list`), give its arguments with "
                         f"--set KEY=VALUE (e.g. --set stage_blocks=[2,2,2,2]), or leave out --arch to convert "
                         f"without the check")


def _run_convert(args: argparse.Namespace) -> int:
    from resbone.convert import (
        DIALECTS,
        convert_state_dict,
        detect_dialect,
        load_state_dict_file,
        resolve_dialect,
        save_state_dict_file,
    )

    if args.set and args.arch is None:
        raise ValueError("--set builds the --arch model; give --arch NAME too")
    dst = resolve_dialect(args.dst)
    state_dict = load_state_dict_file(args.input)
    model = None
    if args.arch is not None:
        from resbone.models.registry import build_registered_model

        model = build_registered_model(args.arch, **_parse_model_overrides(args.set))
    src = detect_dialect(state_dict, model=model) if args.src == "auto" else resolve_dialect(args.src)
    options = _convert_options(args, src, dst)
    out = convert_state_dict(state_dict, src, dst, model=model, allow_nonfinite=args.allow_nonfinite, **options)
    if model is not None:
        _check_arch(args, model, state_dict, src, options)
    path = save_state_dict_file(out, args.output, source=args.input, pickle_key=DIALECTS[dst].pickle_key)
    checked = f", checked against {args.arch}" if args.arch else ""
    print(f"{args.input} ({src}, {len(state_dict)} tensors) -> {path} ({dst}, {len(out)} tensors){checked}")
    return 0


# ---- entry point ----------------------------------------------------------------------------------
_COMMANDS = (_add_summary, _add_list, _add_configs, _add_export, _add_convert, *TASK_COMMANDS, *WEIGHTS_COMMANDS,
             *QUANTIZE_COMMANDS, *REID_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resbone", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an expected failure too (also: RESBONE_DEBUG=1); may follow "
                             "the command")
    parser.add_argument("--version", action="version", version=f"resbone {resbone.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


# a path that names nothing, or a folder where a file must go (or the reverse), is the user's to fix
_USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError,
                IsADirectoryError)


def _expected_failure(error: BaseException) -> tuple[int, str] | None:
    """(exit status, one line) for a failure the user can act on; None for a bug (its traceback shows)."""
    from resbone.utils.extras import MissingExtraError
    from resbone.utils.files import WriteError, is_disk_error

    if isinstance(error, MissingExtraError):  # an optional dependency to install: the message says how
        return 2, str(error)

    if isinstance(error, (FloatingPointError, WriteError)):  # a diverging loss, a disk the engine named
        return 1, str(error)
    if isinstance(error, OSError) and (isinstance(error, _USER_ERRORS) or is_disk_error(error)):
        # a path the user gave, or a full / read-only / forbidden disk outside the engine's OUTPUT_DIR
        text = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        return (2 if isinstance(error, _USER_ERRORS) else 1), text
    if isinstance(error, _USER_ERRORS):
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        return 2, str(message)
    if is_disk_error(error):  # torch.save's RuntimeError for a write that failed
        return 1, f"a write failed, the disk may be full ({str(error).strip().splitlines()[0]})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--debug` anywhere (`resbone train CFG --debug`): argparse only knows it before the command
    debug = "--debug" in argv or os.environ.get("RESBONE_DEBUG", "").strip() not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `KEY VALUE` overrides may also follow an option (`eval CFG --weights W MODEL.DEVICE cpu`), and predict's
    # image files too (`predict CFG --weights W a.png`): argparse fills a positional `nargs='*'` (empty) at
    # the first positional it meets, so the rest arrives here.
    plain = extra and not any(e.startswith("-") for e in extra)
    if plain and getattr(args, "images", None) == []:
        args.images = extra
    elif plain and isinstance(getattr(args, "opts", None), list):
        args.opts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if isinstance(getattr(args, "config", None), str):  # train / eval / predict: a path or a shipped name
            from resbone.utils.configs import find_config

            args.config = find_config(args.config)
        return int(args.func(args) or 0)
    except Exception as error:
        failure = _expected_failure(error)
        if failure is None or debug:
            raise
        status, message = failure
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
        hint = " (RESBONE_DEBUG=1 shows the traceback)" if status == 1 else ""
        print(f"resbone {args.command}: error: {message}{hint}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
