"""Detection data: COCO-json datasets, flip, collate, the data-set catalog, the synthetic shapes set."""
from resbone.detection.data.dataset import (
                                            COCODetection,
                                            collate,
                                            data_root,
                                            hflip,
                                            read_image,
                                            register_dataset,
                                            resolve_dataset,
)
from resbone.detection.data.shapes import SHAPE_CLASSES, generate_shapes, generate_shapes_split

__all__ = ["COCODetection", "SHAPE_CLASSES", "collate", "data_root", "generate_shapes",
           "generate_shapes_split", "hflip", "read_image", "register_dataset", "resolve_dataset"]
