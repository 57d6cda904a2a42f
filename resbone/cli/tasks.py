"""The `resbone` commands of the training engine: data, train, eval, predict, for the task the config names.

Each command has one `_add_<name>` function that declares its arguments and a `_run_<name>` that calls
the library (resbone.tasks picks the task from the config's TASK: detection when it has none);
resbone/cli/__init__.py puts them beside the backbone commands.
"""
from __future__ import annotations

import argparse

__all__ = ["TASK_COMMANDS"]


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate datasets (synthetic: shapes for detection, textures for "
                                    "classification, people in Market-1501's layout for re-id)")
    p.add_argument("kind", choices=["shapes", "textures", "reid"], help="which data set to generate")
    p.add_argument("--out", required=True, help="folder for the data set (shapes: <split>/*.png and "
                                                "annotations/instances_<split>.json; textures: <split>/<class>/*.png; "
                                                "reid: bounding_box_train, query, bounding_box_test)")
    p.add_argument("--num-train", type=int, default=None, help="training images (textures: per class; reid: "
                                                                "training identities)")
    p.add_argument("--num-val", type=int, default=None, help="validation images (textures: per class; reid: "
                                                              "held-out identities)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (reid: the height; width = half)")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=_run_data)


def _run_data(args: argparse.Namespace) -> int:
    given = {key: value for key, value in dict(num_train=args.num_train, num_val=args.num_val, image_size=args.size,
                                               seed=args.seed).items() if value is not None}
    if args.kind == "reid":
        from resbone.cli.reid import generate_reid_data

        return generate_reid_data(args.out, given)
    if args.kind == "shapes":
        from resbone.detection.data import generate_shapes
        from resbone.detection.data.shapes import SHAPES_DEFAULTS

        paths = generate_shapes(args.out, **{**SHAPES_DEFAULTS, **given})
    else:
        from resbone.classification.data.textures import TEXTURES_DEFAULTS, generate_textures

        paths = generate_textures(args.out, **{**TEXTURES_DEFAULTS, **given})
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a YAML config; its TASK picks the task (FCOS's own files, with none: detection)")
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
    from resbone.tasks import load_cfg

    return load_cfg(args.config, list(args.opts) + (["MODEL.COMPILE", "True"] if args.compile else []))


def _parts(cfg):
    from resbone.tasks import get_task

    return get_task(cfg.TASK or "detection")


def _add_allow_missing_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true",
                   help="run even when the weights leave some of the model's tensors missing (or hold "
                        "others); those keep their initial values and the result says 'partial weights'")


def _partial_note(partial: str | None) -> str:
    return f"  (partial weights: {partial})" if partial else ""


def _print_eval(task, results: dict, partial: str | None = None) -> None:
    for name, metrics in results.items():
        print(f"{name}: " + task.format_metrics(metrics) + _partial_note(partial))


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector, a classifier or a re-id model from a config (torchrun -m "
                                     "resbone train ... for DDP)")
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
    task = _parts(cfg).task
    try:
        result = Trainer(cfg, task, resume=args.resume, overwrite=args.overwrite, threads=args.threads).train()
        if distributed.is_main_process() and result.get("eval"):
            _print_eval(task, result["eval"])
    finally:
        distributed.cleanup()
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on the config's test sets (detection: COCO AP, "
                                    "classification: Acc@1 / Acc@5, re-id: rank-1/5/10 and mAP)")
    _add_config_args(p)
    p.add_argument("--weights", required=True, help="a checkpoint written by `resbone train`")
    _add_allow_missing_arg(p)
    _add_threads_arg(p)
    _add_compile_arg(p)
    p.add_argument("--int8", action="store_true", help="detection and classification: quantize the network to "
                   "int8 first (CPU; calibrated on 8 test-time batches of DATASETS.TRAIN)")
    p.add_argument("--out", default=None, metavar="FOLDER", help="classification / re-id: folder for the confusion "
                                                                 "matrix / ranked-list PNGs of each test set")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from resbone.engine import distributed

    cfg = _config(args)
    parts = _parts(cfg)
    try:
        int8 = dict(int8=True) if args.int8 else {}
        if int8 and (cfg.TASK or "detection") not in ("detection", "classification"):
            raise ValueError(f"--int8 evaluates a detector or a classifier; {args.config} is a {cfg.TASK} config")
        if args.out is not None and parts.name == "detection":
            raise ValueError("--out applies to classification and re-id configs; drop it for a detector")
        pictures = {} if args.out is None else dict(out_dir=args.out)
        results = parts.evaluate_weights(cfg, args.weights, allow_missing=args.allow_missing, threads=args.threads,
                                         **int8, **pictures)
        if distributed.is_main_process():
            _print_eval(parts.task, results, results.partial_weights)
    finally:
        distributed.cleanup()
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="a detector's boxes or a classifier's top-k classes, drawn on images (PNG)")
    p.add_argument("config", help="the YAML config the model was trained with")
    p.add_argument("--weights", required=True, help="a checkpoint written by `resbone train`")
    p.add_argument("images", nargs="*", help="image files or (classification) folders of images; none with --grid")
    p.add_argument("--out", required=True, help="folder for the annotated PNGs")
    p.add_argument("--score-threshold", type=float, default=None, help="detection: boxes drawn from this score "
                                                                       "(default 0.3)")
    p.add_argument("--topk", type=int, default=None, help="classification: classes listed per image (default 5)")
    p.add_argument("--gt", "--show-gt", dest="show_gt", action="store_true",
                   help="detection: draw the ground truth beside the prediction (images of the config's data sets, "
                        "or --gt-file)")
    p.add_argument("--gt-file", default=None, metavar="ANN.json",
                   help="detection: a COCO json holding the images' boxes")
    p.add_argument("--grid", type=int, default=None, metavar="N",
                   help="instead of image files: the first N images of the test set, truth beside prediction, "
                        "in one OUT/grid_<set>.png")
    p.add_argument("--grid-columns", type=int, default=None, metavar="C", help="panels per row of the grid")
    _add_allow_missing_arg(p)
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")
    _add_threads_arg(p)
    p.set_defaults(func=_run_predict)


def _only_for(args: argparse.Namespace, task: str, options: dict[str, object]) -> None:
    given = [name for name, value in options.items() if value not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to {task} only; "
                         f"{args.config} is a config of another task")


def _run_predict(args: argparse.Namespace) -> int:
    from resbone.tasks import load_cfg

    cfg = load_cfg(args.config, args.opts)
    if args.grid is not None and args.images:
        raise ValueError(f"--grid draws the test set's images; drop the image files {args.images[:3]} or --grid")
    parts = _parts(cfg)
    if parts.name == "reid":
        raise ValueError(f"{args.config} is a re-id config: a re-id model ranks a gallery rather than predicting "
                         "labels; `resbone eval CONFIG --weights W --out FOLDER` draws the ranked lists and "
                         "`resbone reid extract CONFIG --weights W FOLDER --out emb.npy` writes embeddings")
    if parts.name == "classification":
        _only_for(args, "detection", {"--score-threshold": args.score_threshold, "--gt": args.show_gt,
                                      "--gt-file": args.gt_file})
        return _predict_classes(cfg, args, parts.predictor)
    _only_for(args, "classification", {"--topk": args.topk})
    return _predict_boxes(cfg, args, parts.predictor)


def _predict_classes(cfg, args: argparse.Namespace, predictor) -> int:
    common = dict(allow_missing=args.allow_missing, threads=args.threads)
    if args.grid is not None:  # the grid lists 3 classes per image unless --topk says otherwise
        common["topk"] = 3 if args.topk is None else args.topk
        print(predictor.draw_validation_grid(cfg, args.weights, args.out, num_images=args.grid,
                                             columns=args.grid_columns or 4, **common))
        return 0
    common["topk"] = 5 if args.topk is None else args.topk
    result = predictor.predict_images(cfg, args.weights, args.images, args.out, **common)
    for path, classes in result.items():
        print(f"{path}: " + "  ".join(f"{name} {p:.3f}" for name, p in classes) + _partial_note(result.partial_weights))
    print(result.grid)
    return 0


def _predict_boxes(cfg, args: argparse.Namespace, predictor) -> int:
    threshold = 0.3 if args.score_threshold is None else args.score_threshold
    if args.grid is not None:
        print(predictor.draw_validation_grid(cfg, args.weights, args.out, num_images=args.grid,
                                             columns=args.grid_columns or 2, score_threshold=threshold,
                                             allow_missing=args.allow_missing, threads=args.threads))
        return 0
    written = predictor.predict_images(cfg, args.weights, args.images, args.out, score_threshold=threshold,
                                       show_gt=args.show_gt, gt_file=args.gt_file, allow_missing=args.allow_missing,
                                       threads=args.threads)
    for path in written:
        print(path + _partial_note(written.partial_weights))
    return 0


TASK_COMMANDS = (_add_data, _add_train, _add_eval, _add_predict)
