"""`resbone reid extract CONFIG --weights W FOLDER --out emb.npy|emb.pt`, `resbone data reid` and `resbone export`
of a re-id config: library calls of resbone.reid (predictor.extract_embeddings / save_embeddings / load_reid_model,
synthetic.generate_reid_set).

Reference test: tests/reid/test_cli.py (the written embeddings equal the model's own on the same images).
"""
from __future__ import annotations

import argparse
import os

__all__ = ["REID_COMMANDS", "generate_reid_data", "reid_model_for_export"]


def generate_reid_data(out: str, given: dict) -> int:
    """`resbone data reid`: --num-train / --num-val are identities, --size the height (the width is half)."""
    from resbone.reid.data import SPLITS
    from resbone.reid.synthetic import REID_DEFAULTS, generate_reid_set

    names = dict(num_train="train_ids", num_val="test_ids", seed="seed")
    kwargs = {names[key]: value for key, value in given.items() if key in names}
    if "image_size" in given:
        kwargs["size"] = (given["image_size"], given["image_size"] // 2)
    root = generate_reid_set(out, **{**REID_DEFAULTS, **kwargs})
    for split, folder in SPLITS.items():
        print(f"{split}: {os.path.join(root, folder)}")
    return 0


def reid_model_for_export(config: str, opts: list[str], checkpoint: str | None):
    """`resbone export CONFIG OUT --checkpoint W` for a re-id config: the trained model (eval mode: the embedding
    after the BNNeck out) and the config's INPUT.SIZE."""
    from resbone.reid.config import load_cfg
    from resbone.reid.predictor import load_reid_model

    if not checkpoint:
        raise ValueError(f"{config} is a re-id config: give the trained weights with --checkpoint (a `resbone "
                         "train` checkpoint)")
    cfg = load_cfg(config, opts)
    return load_reid_model(cfg, checkpoint)[0], tuple(cfg.INPUT.SIZE)


def _add_reid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reid", help="re-id tools: extract the embeddings of a folder of images")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("extract", help="write the embedding (after the BNNeck) of every image of a folder")
    e.add_argument("config", help="the re-id YAML config the model was trained with (or a shipped config's name)")
    e.add_argument("folder", help="a folder of images (searched recursively, sorted by path)")
    e.add_argument("--weights", required=True, help="a checkpoint written by `resbone train`")
    e.add_argument("--out", required=True, help="emb.npy (the N x C array; the file names in emb.txt beside it) or "
                                                "emb.pt (a dict of 'embeddings' and 'files')")
    e.add_argument("--allow-missing", action="store_true",
                   help="run even when the weights leave some of the model's tensors missing")
    e.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")
    e.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op threads")
    e.set_defaults(func=_run_extract)


def _run_extract(args: argparse.Namespace) -> int:
    from resbone.reid.predictor import EMBEDDING_SUFFIXES, extract_embeddings, save_embeddings
    from resbone.tasks import load_cfg

    if not args.out.endswith(EMBEDDING_SUFFIXES):  # before the model is built
        raise ValueError(f"--out must end in {' or '.join(EMBEDDING_SUFFIXES)}, got {args.out!r}")
    cfg = load_cfg(args.config, args.opts)
    if cfg.TASK != "reid":
        raise ValueError(f"{args.config} is a {cfg.TASK or 'detection'} config; `resbone reid extract` needs a re-id "
                         "one (TASK: reid)")
    embeddings = extract_embeddings(cfg, args.weights, args.folder, allow_missing=args.allow_missing,
                                    threads=args.threads)
    written = save_embeddings(embeddings, args.out, relative_to=args.folder)
    note = f"  (partial weights: {embeddings.partial_weights})" if embeddings.partial_weights else ""
    shape = tuple(embeddings.features.shape)
    print(f"{len(embeddings.files)} images of {args.folder} -> {shape[0]} x {shape[1]} embeddings: "
          f"{', '.join(written)}{note}")
    return 0


REID_COMMANDS = (_add_reid,)
