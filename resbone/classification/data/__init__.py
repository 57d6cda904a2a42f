"""Classification data: image folders / CSV files with checked classes, and the generated textures set."""
from resbone.classification.data.folders import LabelledImages, check_same_classes, open_labelled_images
from resbone.classification.data.textures import TEXTURE_CLASSES, generate_textures

__all__ = ["LabelledImages", "TEXTURE_CLASSES", "check_same_classes", "generate_textures", "open_labelled_images"]
