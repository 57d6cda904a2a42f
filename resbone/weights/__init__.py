"""Published weights of resbone's models: the table of tags, every ecosystem's checkpoint address, and
downloading into torch hub's cache.

    list_pretrained('resnet50*')                -> ['resnet50.detectron_caffe_in1k', ..., 'resnet50.tv2_in1k']
    get_weights('resnet50') / ('resnet50.tv_in1k') -> Weights (url, acc1, acc5, num_params, transforms())
    resolve('torchvision://resnet50' | 'catalog://ImageNetPretrained/MSRA/R-50' | 'hf-hub:timm/NAME' | URL)
                                                -> local file in $TORCH_HOME/hub/checkpoints (downloaded once)
"""
from resbone.weights.hub import DownloadError, cache_dir, cached_file, is_offline, resolve, verify
from resbone.weights.schemes import SCHEMES, has_scheme, locate
from resbone.weights.table import EvalTransform, Weights, all_weights, get_weights, list_pretrained, markdown_table

__all__ = ["DownloadError", "EvalTransform", "SCHEMES", "Weights", "all_weights", "cache_dir", "cached_file",
           "get_weights", "has_scheme", "is_offline", "list_pretrained", "locate", "markdown_table", "resolve",
           "verify"]
