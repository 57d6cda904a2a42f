"""The `resbone` commands of the detection engine: data, train, eval, predict.

Each command has one `_add_<name>` function that declares its arguments and a `_run_<name>` that calls
the engine; resbone/cli/__init__.py puts them beside the backbone commands.
"""
from __future__ import annotations

import argparse

__all__ = ["DETECTION_COMMANDS"]


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate datasets (the synthetic shapes set)")
    p.add_argument("kind", choices=["shapes"], help="which data set to generate")
    p.add_argument("--out", required=True, help="folder for <split>/*.png and annotations/instances_<split>.json")
    from resbone.detection.data.shapes import SHAPES_DEFAULTS

    p.add_argument("--num-train", type=int, default=SHAPES_DEFAULTS["num_train"])
    p.add_argument("--num-val", type=int, default=SHAPES_DEFAULTS["num_val"])
    p.add_argument("--size", type=int, default=SHAPES_DEFAULTS["image_size"], help="image side in pixels")
    p.add_argument("--seed", type=int, default=SHAPES_DEFAULTS["seed"])
    p.set_defaults(func=_run_data)


def _run_data(args: argparse.Namespace) -> int:
    from resbone.detection.data import generate_shapes

    paths = generate_shapes(args.out, num_train=args.num_train, num_val=args.num_val, image_size=args.size,
                            seed=args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML config (FCOS's own files load unchanged)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, e.g. SOLVER.MAX_ITER 200 MODEL.DEVICE cpu")


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="intra-op threads per process (default: $OMP_NUM_THREADS, else the cores this process "
                        "may use divided by torchrun's local processes)")


def _add_compile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (backbone, FPN, head): the same as MODEL.COMPILE True")


def _config(args: argparse.Namespace):
    from resbone.engine.config import load_cfg

    return load_cfg(args.config, list(args.opts) + (["MODEL.COMPILE", "True"] if args.compile else []))


def _add_allow_missing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true",
                   help="run even when the weights leave some of the detector's tensors missing (or hold "
                        "others); those keep their initial values and the result says 'partial weights'")


def _partial_note(partial: str | None) -> str:
    return f"  (partial weights: {partial})" if partial else ""


def _print_eval(results: dict, partial: str | None = None) -> None:
    from resbone.detection.evaluation import COCO_METRICS

    for name, metrics in results.items():
        print(f"{name}: " + "  ".join(f"{k} {metrics[k]:.3f}" for k in COCO_METRICS) + _partial_note(partial))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector from a config (torchrun -m resbone train ... for DDP)")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR's last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run OUTPUT_DIR holds (its checkpoints, metrics, curves) with a fresh one")
    _add_threads_arg(p)
    _add_compile_arg(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from resbone.engine import distributed
    from resbone.engine.trainer import Trainer

    cfg = _config(args)
    try:
        result = Trainer(cfg, resume=args.resume, overwrite=args.overwrite, threads=args.threads).train()
        if distributed.is_main_process() and result.get("eval"):
            _print_eval(result["eval"])
    finally:
        distributed.cleanup()
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a detector (COCO AP) on the config's DATASETS.TEST")
    _add_config_args(p)
    p.add_argument("--weights", required=True, help="a checkpoint written by `resbone train`")
    _add_allow_missing_arg(p)
    _add_threads_arg(p)
    _add_compile_arg(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from resbone.engine import distributed
    from resbone.engine.predictor import evaluate_weights

    cfg = _config(args)
    try:
        results = evaluate_weights(cfg, args.weights, allow_missing=args.allow_missing, threads=args.threads)
        if distributed.is_main_process():
            _print_eval(results, results.partial_weights)
    finally:
        distributed.cleanup()
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="draw a detector's boxes, labels and scores on images (PNG)")
    p.add_argument("config", help="the YAML config the detector was trained with")
    p.add_argument("--weights", required=True, help="a checkpoint written by `resbone train`")
    p.add_argument("images", nargs="*", help="image files (none with --grid)")
    p.add_argument("--out", required=True, help="folder for the annotated PNGs")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--gt", "--show-gt", dest="show_gt", action="store_true",
                   help="draw the ground truth beside the prediction (images of the config's data sets, or --gt-file)")
    p.add_argument("--gt-file", default=None, metavar="ANN.json", help="a COCO json holding the images' boxes")
    p.add_argument("--grid", type=int, default=None, metavar="N",
                   help="instead of image files: the first N images of DATASETS.TEST[0], ground truth | prediction, "
                        "in one OUT/grid_<set>.png")
    p.add_argument("--grid-columns", type=int, default=2, metavar="C", help="image pairs per row of the grid")
    _add_allow_missing_arg(p)
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")
    _add_threads_arg(p)
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from resbone.engine.config import load_cfg
    from resbone.engine.predictor import draw_validation_grid, predict_images

    cfg = load_cfg(args.config, args.opts)
    if args.grid is not None:
        if args.images:
            raise ValueError(f"--grid draws DATASETS.TEST's images; drop the image files {args.images[:3]} or --grid")
        print(draw_validation_grid(cfg, args.weights, args.out, num_images=args.grid, columns=args.grid_columns,
                                   score_threshold=args.score_threshold, allow_missing=args.allow_missing,
                                   threads=args.threads))
        return 0
    written = predict_images(cfg, args.weights, args.images, args.out, score_threshold=args.score_threshold,
                             show_gt=args.show_gt, gt_file=args.gt_file, allow_missing=args.allow_missing,
                             threads=args.threads)
    for path in written:
        print(path + _partial_note(written.partial_weights))
    return 0


DETECTION_COMMANDS = (_add_data, _add_train, _add_eval, _add_predict)
