"""The re-identification task: the BNNeck baseline (reid-strong-baseline / fast-reid), its losses and PK sampler,
Market-1501 / DukeMTMC-reID data and a generated set, and CMC / mAP with k-reciprocal re-ranking.

Reference tests: tests/reid/ (torchreid's and fast-reid's own code on the same inputs).
"""
from resbone.reid.baseline import evaluate, extract_features, reid_loaders, train_epochs
from resbone.reid.data import ReidImages, ReidItem, parse_name, read_reid_folder, reid_transforms
from resbone.reid.losses import CenterLoss, ReidCriterion, TripletLoss
from resbone.reid.metrics import distance_matrix, evaluate_rank, rank_summary
from resbone.reid.model import GeneralizedMeanPooling, ReidModel, ReidOutput
from resbone.reid.rerank import re_ranking
from resbone.reid.sampler import PKSampler
from resbone.reid.synthetic import generate_reid_set
from resbone.reid.visualize import ranked_lists, render_ranked_lists, save_ranked_lists

__all__ = ["CenterLoss", "GeneralizedMeanPooling", "PKSampler", "ReidCriterion", "ReidImages", "ReidItem", "ReidModel",
           "ReidOutput", "TripletLoss", "distance_matrix", "evaluate", "evaluate_rank", "extract_features",
           "generate_reid_set", "parse_name", "rank_summary", "ranked_lists", "re_ranking", "read_reid_folder",
           "reid_loaders", "reid_transforms", "render_ranked_lists", "save_ranked_lists", "train_epochs"]
