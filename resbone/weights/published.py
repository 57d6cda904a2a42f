"""The published ImageNet weights of resbone's models, as their publishers list them: rows of data, nothing else.

Each row was read from the publisher's own code or model zoo and is tested against it where it is installed
(tests/weights/test_table.py): torchvision's `Weights` enums (file, acc@1/5, num_params, resize), timm's
`pretrained_cfg` (tags, crop_pct, input size, interpolation, mean/std, licence, default tag, legacy file),
mmengine's hub json files (open-mmlab://, mmcls://, torchvision:// names), mmpretrain's metafile.yml (acc@1/5),
Cadene's `pretrained_settings`, fast-reid's and IBN-Net's `model_urls`. FCOS's catalog names are from
maskrcnn-benchmark / FCOS `paths_catalog.py` (ModelCatalog.C2_IMAGENET_MODELS), not installed here.
"""
from __future__ import annotations

# (model, tag, file at https://download.pytorch.org/models/, acc@1, acc@5, num_params, resize); crop 224
TORCHVISION = (
    ("resnet18", "tv_in1k", "resnet18-f37072fd.pth", 69.758, 89.078, 11689512, 256),
    ("resnet34", "tv_in1k", "resnet34-b627a593.pth", 73.314, 91.42, 21797672, 256),
    ("resnet50", "tv_in1k", "resnet50-0676ba61.pth", 76.13, 92.862, 25557032, 256),
    ("resnet50", "tv2_in1k", "resnet50-11ad3fa6.pth", 80.858, 95.434, 25557032, 232),
    ("resnet101", "tv_in1k", "resnet101-63fe2227.pth", 77.374, 93.546, 44549160, 256),
    ("resnet101", "tv2_in1k", "resnet101-cd907fc2.pth", 81.886, 95.78, 44549160, 232),
    ("resnet152", "tv_in1k", "resnet152-394f9c45.pth", 78.312, 94.046, 60192808, 256),
    ("resnet152", "tv2_in1k", "resnet152-f82ba261.pth", 82.284, 96.002, 60192808, 232),
    ("resnext50_32x4d", "tv_in1k", "resnext50_32x4d-7cdf4587.pth", 77.618, 93.698, 25028904, 256),
    ("resnext50_32x4d", "tv2_in1k", "resnext50_32x4d-1a0047aa.pth", 81.198, 95.34, 25028904, 232),
    ("resnext101_32x8d", "tv_in1k", "resnext101_32x8d-8ba56ff5.pth", 79.312, 94.526, 88791336, 256),
    ("resnext101_32x8d", "tv2_in1k", "resnext101_32x8d-110c445d.pth", 82.834, 96.228, 88791336, 232),
    ("resnext101_64x4d", "tv_in1k", "resnext101_64x4d-173b62eb.pth", 83.246, 96.454, 83455272, 232),
    ("wide_resnet50_2", "tv_in1k", "wide_resnet50_2-95faca4d.pth", 78.468, 94.086, 68883240, 256),
    ("wide_resnet50_2", "tv2_in1k", "wide_resnet50_2-9ba9bcbe.pth", 81.602, 95.758, 68883240, 232),
    ("wide_resnet101_2", "tv_in1k", "wide_resnet101_2-32ee1156.pth", 78.848, 94.284, 126886696, 256),
    ("wide_resnet101_2", "tv2_in1k", "wide_resnet101_2-d733dc28.pth", 82.51, 96.02, 126886696, 232),
    ("mobilenet_v2", "tv_in1k", "mobilenet_v2-b0353104.pth", 71.878, 90.286, 3504872, 256),
    ("mobilenet_v2", "tv2_in1k", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822, 3504872, 232),
)
# torchvision 0.13 added these: mmcv / mmengine name them only as torchvision://NAME.imagenet1k_v1
TORCHVISION_SINCE_013 = {"resnext101_64x4d"}
# The files torchvision < 0.13 (and fast-reid, torchreid, old mmcv) name for the same V1 weights; caches hold them.
TORCHVISION_OLD_FILES = {
    "resnet18": "resnet18-5c106cde.pth", "resnet34": "resnet34-333f7ec4.pth", "resnet50": "resnet50-19c8e357.pth",
    "resnet101": "resnet101-5d3b4d8f.pth", "resnet152": "resnet152-b121ed2d.pth",
}

# timm's tags for the variants torchvision does not publish:
# (model, tag, num_params, crop_pct, input size, interpolation, mean/std, timm < 0.9's GitHub file or None)
_IN = "imagenet"
_RA4 = "inception"  # timm's ra4 weights use mean = std = 0.5
_GLUON = "https://github.com/rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/"
_RA = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_RSB = "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/"
TIMM = (
    ("resnet50c", "gluon_in1k", 25576264, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet50_v1c-48092f55.pth"),
    ("resnet101c", "gluon_in1k", 44568392, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet101_v1c-1f26822a.pth"),
    ("resnet152c", "gluon_in1k", 60212040, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet152_v1c-a3bb0b98.pth"),
    ("resnet18d", "ra2_in1k", 11708744, 0.875, 224, "bicubic", _IN, _RA + "resnet18d_ra2-48a79e06.pth"),
    ("resnet18d", "ra4_e3600_r224_in1k", 11708744, 0.9, 224, "bicubic", _RA4, None),
    ("resnet34d", "ra2_in1k", 21816904, 0.875, 224, "bicubic", _IN, _RA + "resnet34d_ra2-f8dcfcaf.pth"),
    ("resnet50d", "ra2_in1k", 25576264, 0.875, 224, "bicubic", _IN, _RA + "resnet50d_ra2-464e36ba.pth"),
    ("resnet50d", "a1_in1k", 25576264, 0.95, 224, "bicubic", _IN, _RSB + "resnet50d_a1_0-e20cff14.pth"),
    ("resnet50d", "a2_in1k", 25576264, 0.95, 224, "bicubic", _IN, _RSB + "resnet50d_a2_0-a3adc64d.pth"),
    ("resnet50d", "a3_in1k", 25576264, 0.95, 160, "bicubic", _IN, _RSB + "resnet50d_a3_0-403fdfad.pth"),
    ("resnet50d", "gluon_in1k", 25576264, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet50_v1d-818a1b1b.pth"),
    ("resnet50d", "ra4_e3600_r224_in1k", 25576264, 0.95, 224, "bicubic", _RA4, None),
    ("resnet101d", "ra2_in1k", 44568392, 0.95, 256, "bicubic", _IN, _RA + "resnet101d_ra2-2803ffab.pth"),
    ("resnet101d", "gluon_in1k", 44568392, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet101_v1d-0f9c8644.pth"),
    ("resnet152d", "ra2_in1k", 60212040, 0.95, 256, "bicubic", _IN, _RA + "resnet152d_ra2-5cac0439.pth"),
    ("resnet152d", "gluon_in1k", 60212040, 0.875, 224, "bicubic", _IN, _GLUON + "gluon_resnet152_v1d-bd354e12.pth"),
    ("seresnet50", "a1_in1k", 28088024, 0.95, 224, "bicubic", _IN, _RSB + "seresnet50_a1_0-ffa00869.pth"),
    ("seresnet50", "a2_in1k", 28088024, 0.95, 224, "bicubic", _IN, _RSB + "seresnet50_a2_0-850de0d9.pth"),
    ("seresnet50", "a3_in1k", 28088024, 0.95, 160, "bicubic", _IN, _RSB + "seresnet50_a3_0-317ecd56.pth"),
    ("seresnet50", "ra2_in1k", 28088024, 0.875, 224, "bicubic", _IN, _RA + "seresnet50_ra_224-8efdb4bb.pth"),
    ("seresnext50_32x4d", "racm_in1k", 27559896, 0.875, 224, "bicubic", _IN,
     _RA + "seresnext50_32x4d_racm-a304a460.pth"),
    ("seresnext50_32x4d", "gluon_in1k", 27559896, 0.875, 224, "bicubic", _IN,
     _GLUON + "gluon_seresnext50_32x4d-90cf2d6e.pth"),
    ("mobilenetv2_100", "ra_in1k", 3504872, 0.875, 224, "bicubic", _IN, _RA + "mobilenetv2_100_ra-b33bc2c4.pth"),
)

# open-mmlab (mmcv's third_party files and mmcls's model zoo):
# (model, tag, URL, acc@1, acc@5, scheme names, model arguments the file needs)
_MMCV = "https://download.openmmlab.com/pretrain/third_party/"
_MMCLS = "https://download.openmmlab.com/mmclassification/v0/"
OPENMMLAB = (
    ("resnet18c", "openmmlab_in1k", _MMCV + "resnet18_v1c-b5776b93.pth", None, None,
     ("open-mmlab://resnet18_v1c",), {}),
    ("resnet50c", "openmmlab_in1k", _MMCV + "resnet50_v1c-2cccc1ad.pth", None, None,
     ("open-mmlab://resnet50_v1c",), {}),
    ("resnet101c", "openmmlab_in1k", _MMCV + "resnet101_v1c-e67eebb6.pth", None, None,
     ("open-mmlab://resnet101_v1c",), {}),
    ("resnet50", "detectron_caffe_in1k", _MMCV + "resnet50_caffe-788b5fa3.pth", None, None,
     ("open-mmlab://detectron/resnet50_caffe", "open-mmlab://resnet50_caffe"), {"style": "caffe"}),
    ("resnet50", "msra_caffe_in1k", _MMCV + "resnet50_msra-5891d200.pth", None, None,
     ("open-mmlab://detectron2/resnet50_caffe",), {"style": "caffe"}),
    ("resnet101", "detectron_caffe_in1k", _MMCV + "resnet101_caffe-3ad79236.pth", None, None,
     ("open-mmlab://detectron/resnet101_caffe", "open-mmlab://resnet101_caffe"), {"style": "caffe"}),
    ("resnet101", "msra_caffe_in1k", _MMCV + "resnet101_msra-6cc46731.pth", None, None,
     ("open-mmlab://detectron2/resnet101_caffe",), {"style": "caffe"}),
    ("resnet18", "mmcls_in1k", _MMCLS + "resnet/resnet18_8xb32_in1k_20210831-fbbb1da6.pth", 69.90, 89.43,
     ("mmcls://resnet18",), {}),
    ("resnet34", "mmcls_in1k", _MMCLS + "resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth", 73.62, 91.59,
     ("mmcls://resnet34",), {}),
    ("resnet50", "mmcls_in1k", _MMCLS + "resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth", 76.55, 93.06,
     ("mmcls://resnet50",), {}),
    ("resnet101", "mmcls_in1k", _MMCLS + "resnet/resnet101_8xb32_in1k_20210831-539c63f8.pth", 77.97, 94.06,
     ("mmcls://resnet101",), {}),
    ("resnet152", "mmcls_in1k", _MMCLS + "resnet/resnet152_8xb32_in1k_20210901-4d7582fa.pth", 78.48, 94.13,
     ("mmcls://resnet152",), {}),
    ("resnet50d", "mmcls_in1k", _MMCLS + "resnet/resnetv1d50_b32x8_imagenet_20210531-db14775a.pth", 77.54, 93.57,
     ("mmcls://resnet50_v1d",), {}),
    ("resnet101d", "mmcls_in1k", _MMCLS + "resnet/resnetv1d101_b32x8_imagenet_20210531-6e13bcd3.pth", 78.93, 94.48,
     ("mmcls://resnet101_v1d",), {}),
    ("resnet152d", "mmcls_in1k", _MMCLS + "resnet/resnetv1d152_b32x8_imagenet_20210531-278cf22a.pth", 79.41, 94.70,
     ("mmcls://resnet152_v1d",), {}),
)

# maskrcnn-benchmark / FCOS `catalog://ImageNetPretrained/NAME` (paths_catalog.py ModelCatalog.C2_IMAGENET_MODELS):
# Caffe2 pickles of MSRA's Caffe ResNets and FAIR's ResNeXts, under https://dl.fbaipublicfiles.com/detectron/
CATALOG = {
    "MSRA/R-50": "ImageNetPretrained/MSRA/R-50.pkl",
    "MSRA/R-50-GN": "ImageNetPretrained/47261647/R-50-GN.pkl",
    "MSRA/R-101": "ImageNetPretrained/MSRA/R-101.pkl",
    "MSRA/R-101-GN": "ImageNetPretrained/47592356/R-101-GN.pkl",
    "FAIR/20171220/X-101-32x8d": "ImageNetPretrained/20171220/X-101-32x8d.pkl",
    "FAIR/20171220/X-101-64x4d": "ImageNetPretrained/20171220/X-101-64x4d.pkl",
}
# The catalog's files resbone builds a model for: (model, tag, catalog name, model arguments). Detectron strides
# the first 1x1 of its ResNets (STRIDE_1X1: True) and the 3x3 of its ResNeXts (STRIDE_1X1: False).
MSRA = (
    ("resnet50", "msra_caffe2_in1k", "MSRA/R-50", {"style": "caffe"}),
    ("resnet101", "msra_caffe2_in1k", "MSRA/R-101", {"style": "caffe"}),
    ("resnext101_32x8d", "fair_caffe2_in1k", "FAIR/20171220/X-101-32x8d", {}),
    ("resnext101_64x4d", "fair_caffe2_in1k", "FAIR/20171220/X-101-64x4d", {}),
)

# Cadene's pretrainedmodels (the SENet authors' Caffe weights, ported): (model, URL, acc@1, acc@5), the
# accuracies from its README's "Evaluation on ImageNet" table (rows "Our porting")
_CADENE = "http://data.lip6.fr/cadene/pretrainedmodels/"
CADENE = (
    ("se_resnet50", _CADENE + "se_resnet50-ce0d4300.pth", 77.636, 93.752),
    ("se_resnet101", _CADENE + "se_resnet101-7e38fcc6.pth", 78.396, 94.258),
    ("se_resnet152", _CADENE + "se_resnet152-d17c99b7.pth", 78.658, 94.374),
    ("se_resnext50_32x4d", _CADENE + "se_resnext50_32x4d-a260b3a4.pth", 79.076, 94.434),
    ("se_resnext101_32x4d", _CADENE + "se_resnext101_32x4d-3b2fe3d8.pth", 80.236, 95.028),
)

# IBN-Net's GitHub release v1.0 (the ImageNet weights fast-reid starts from): (model, file, acc@1, acc@5), the
# accuracies from IBN-Net's README (100 - top-1/top-5 error of its fast implementation); None where not given
_IBN = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
IBN = (
    ("resnet50_ibn_a", _IBN + "resnet50_ibn_a-d9d0bb7b.pth", 77.24, 93.59),
    ("resnet101_ibn_a", _IBN + "resnet101_ibn_a-59ea0ac6.pth", 78.71, 94.39),
    ("resnet50_ibn_b", _IBN + "resnet50_ibn_b-9ca61e85.pth", None, None),
    ("se_resnet101_ibn_a", _IBN + "se_resnet101_ibn_a-fabed4e2.pth", 78.75, 94.49),
)

# fast-reid's model zoo (its model-zoo page, release v0.1.1): its BoT ("bag of tricks") re-id models, whose backbone
# resbone builds (last_stride=1, fast-reid's ceil-mode stem pool); the BNNeck head is left out with a warning.
# (model, tag, file, data set, rank@1, mAP); AGW / SBS add non-local blocks and GeM in places resbone does not.
_FASTREID = "https://github.com/JDAI-CV/fast-reid/releases/download/v0.1.1/"
FASTREID = (
    ("resnet50", "fastreid_market_bot", _FASTREID + "market_bot_R50.pth", "Market1501", 94.4, 86.1),
    ("resnet50_ibn_a", "fastreid_market_bot", _FASTREID + "market_bot_R50-ibn.pth", "Market1501", 94.9, 87.6),
    ("resnet101_ibn_a", "fastreid_market_bot", _FASTREID + "market_bot_R101-ibn.pth", "Market1501", 95.4, 88.9),
    ("resnet50", "fastreid_duke_bot", _FASTREID + "duke_bot_R50.pth", "DukeMTMC", 87.2, 77.0),
    ("resnet50_ibn_a", "fastreid_duke_bot", _FASTREID + "duke_bot_R50-ibn.pth", "DukeMTMC", 89.3, 79.6),
    ("resnet101_ibn_a", "fastreid_duke_bot", _FASTREID + "duke_bot_R101-ibn.pth", "DukeMTMC", 91.2, 81.2),
    ("resnet50", "fastreid_msmt_bot", _FASTREID + "msmt_bot_R50.pth", "MSMT17", 74.1, 50.2),
    ("resnet50_ibn_a", "fastreid_msmt_bot", _FASTREID + "msmt_bot_R50-ibn.pth", "MSMT17", 77.0, 54.4),
    ("resnet101_ibn_a", "fastreid_msmt_bot", _FASTREID + "msmt_bot_R101-ibn.pth", "MSMT17", 81.0, 59.4),
)
FASTREID_MODEL = {"last_stride": 1, "stem_pool": "ceil", "num_classes": None}
FASTREID_INPUT = (256, 128)  # fast-reid's INPUT.SIZE_TEST, resized to exactly (bicubic), no crop

# The tag `pretrained=True` picks: torchvision's DEFAULT where torchvision publishes, else timm's default tag,
# else the only publisher's.
DEFAULT_TAGS = {
    "resnet18": "tv_in1k", "resnet34": "tv_in1k", "resnet50": "tv2_in1k", "resnet101": "tv2_in1k",
    "resnet152": "tv2_in1k", "resnext50_32x4d": "tv2_in1k", "resnext101_32x8d": "tv2_in1k",
    "resnext101_64x4d": "tv_in1k", "wide_resnet50_2": "tv2_in1k", "wide_resnet101_2": "tv2_in1k",
    "mobilenet_v2": "tv2_in1k", "resnet18c": "openmmlab_in1k", "resnet50c": "gluon_in1k",
    "resnet101c": "gluon_in1k", "resnet152c": "gluon_in1k", "resnet18d": "ra2_in1k", "resnet34d": "ra2_in1k",
    "resnet50d": "ra2_in1k", "resnet101d": "ra2_in1k", "resnet152d": "ra2_in1k", "seresnet50": "a1_in1k",
    "seresnext50_32x4d": "racm_in1k", "mobilenetv2_100": "ra_in1k", "se_resnet50": "cadene_in1k",
    "se_resnet101": "cadene_in1k", "se_resnet152": "cadene_in1k", "se_resnext50_32x4d": "cadene_in1k",
    "se_resnext101_32x4d": "cadene_in1k", "resnet50_ibn_a": "ibn_in1k", "resnet101_ibn_a": "ibn_in1k",
    "resnet50_ibn_b": "ibn_in1k", "se_resnet101_ibn_a": "ibn_in1k",
}
