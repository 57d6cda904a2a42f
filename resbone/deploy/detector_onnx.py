"""The FCOS detector as an ONNX graph, and the numpy post-processing that completes it.

The graph (`DetectorGraph`, written by resbone.deploy.export_onnx) takes
  images       float32 [N, 3, H, W]: RGB 0..1, each image already resized by the detector's rule and
               zero-padded at the bottom / right to the exported H x W;
  image_sizes  int64 [N, 2]: (height, width) of each image inside its padding,
and computes what the detector does up to its post-processing: the normalisation (BGR 0..255 flip, pixel
mean / std), the padding set to zero after it (as DetectionTransform pads), backbone, FPN and head, and the
decoding of every location of every level:
  boxes        float32 [N, P, 4]: x1, y1, x2, y2 in the resized image's pixels, clipped to its size;
  class_probs  float32 [N, P, C]: sigmoid of the class logits (labels 1..C);
  centerness   float32 [N, P]: sigmoid of the centerness logits.
P counts the locations of all levels, finest first, row-major within a level.

What stays outside, in `decode_detections` (numpy): per level the score threshold and the pre-NMS top-k,
the scores sqrt(class_prob * centerness), class-wise NMS and the final top-k: the steps whose output size
depends on the data. Their settings travel in the file's metadata (key `resbone_detector`), which
`OnnxDetector` reads, so a file alone reproduces the detector. Resizing also stays outside the graph (it
changes the tensor's size): `OnnxDetector` resizes as `DetectionTransform.target_size` says (bilinear,
torch's interpolate), pads, and scales the boxes back by original / resized size.
Anchor: resbone.detection.fcos.postprocess_detections, step for step. Reference test:
tests/deploy/test_onnx.py (onnxruntime + decode_detections give the PyTorch detector's detections on
shapes validation images).
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["DetectorGraph", "OnnxDetector", "decode_detections", "nms"]

METADATA_KEY = "resbone_detector"


class DetectorGraph(nn.Module):
    """A detector with the calling convention of resbone.detection.detector.FCOS, as a tensor-in,
    tensor-out graph for images padded to `input_size` (see the module docstring for its inputs and outputs)."""

    output_names = ("boxes", "class_probs", "centerness")

    def __init__(self, detector: nn.Module, input_size: tuple[int, int]):
        super().__init__()
        transform = detector.transform
        divisor = int(getattr(transform, "size_divisibility", 0) or 1)
        if any(s % divisor for s in input_size):
            raise ValueError(f"a detector's ONNX input size must be a multiple of its size divisibility "
                             f"{divisor} (DATALOADER.SIZE_DIVISIBILITY), got {tuple(input_size)}")
        self.detector = detector
        self.input_size = tuple(int(s) for s in input_size)
        self.to_bgr255 = bool(transform.to_bgr255)
        self.register_buffer("pixel_mean", transform.pixel_mean.detach().float().reshape(1, 3, 1, 1).clone())
        self.register_buffer("pixel_std", transform.pixel_std.detach().float().reshape(1, 3, 1, 1).clone())
        with torch.no_grad():
            logits = detector.forward_network(torch.zeros(1, 3, *self.input_size,
                                                       device=self.pixel_mean.device))[0]
        self.level_sizes = [int(o.shape[-2] * o.shape[-1]) for o in logits]
        self.num_classes = int(logits[0].shape[1])
        self.register_buffer("locations", torch.cat(detector.locations(logits)).float())

    def example_inputs(self) -> dict[str, torch.Tensor]:
        height, width = self.input_size
        return {"images": torch.rand(1, 3, height, width, device=self.pixel_mean.device),
                "image_sizes": torch.tensor([[height, width]], device=self.pixel_mean.device)}

    def metadata(self) -> dict[str, str]:
        d = self.detector
        decode = dict(level_sizes=self.level_sizes, score_thresh=float(d.score_thresh), score_th_on=d.score_th_on,
                      pre_nms_top_n=int(d.pre_nms_top_n), nms_thresh=float(d.nms_thresh),
                      detections_per_img=int(d.detections_per_img))
        resize = dict(min_size=int(d.transform.min_size_test), max_size=int(d.transform.max_size_test))
        return {METADATA_KEY: json.dumps(dict(input_size=list(self.input_size), num_classes=self.num_classes,
                                              decode=decode, resize=resize))}

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor):
        x = images.flip(1) * 255.0 if self.to_bgr255 else images
        x = (x - self.pixel_mean) / self.pixel_std
        height, width = self.input_size
        sizes = image_sizes.to(torch.int64)
        rows = torch.arange(height, device=x.device)[None, :] < sizes[:, :1]  # [N, H]
        cols = torch.arange(width, device=x.device)[None, :] < sizes[:, 1:]  # [N, W]
        x = x * (rows[:, None, :, None] & cols[:, None, None, :]).to(x.dtype)
        logits, regression, centerness = self.detector.forward_network(x)

        def flat(outputs):  # per level [N, ch, h, w] -> [N, P, ch]
            return torch.cat([o.float().flatten(2) for o in outputs], dim=2).transpose(1, 2)

        distances = flat(regression)
        boxes = torch.cat((self.locations - distances[..., :2], self.locations + distances[..., 2:]), dim=2)
        hw = sizes.to(boxes.dtype)
        upper = torch.stack((hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]), dim=1)[:, None, :]
        boxes = torch.minimum(boxes.clamp(min=0.0), upper)  # torchvision.ops.clip_boxes_to_image
        return boxes, flat(logits).sigmoid(), flat(centerness).sigmoid().squeeze(2)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS as torchvision.ops.nms computes it (areas without +1, a box suppressed when its IoU with
    a kept, higher-scoring box is > iou_threshold); indices of the kept boxes, best first. The loop runs
    once per kept box, each step vectorised over the remaining boxes."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = width * height
        with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: IoU nan, kept as torchvision does
            suppressed = inter / (areas[best] + areas[rest] - inter) > iou_threshold
        order = rest[~suppressed]
    return np.asarray(keep, dtype=np.int64)


def _level_candidates(probs: np.ndarray, centerness: np.ndarray, *, score_thresh: float, score_th_on: str,
                      pre_nms_top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """One level of one image: (flat index point * C + class, score) of the candidates, best first."""
    scores = np.sqrt(probs * centerness[:, None])
    flat = np.flatnonzero((probs if score_th_on == "cls" else scores) > score_thresh)
    scores = scores.reshape(-1)[flat]
    order = np.argsort(-scores, kind="stable")[:pre_nms_top_n]
    return flat[order], scores[order]


def decode_detections(boxes: np.ndarray, class_probs: np.ndarray, centerness: np.ndarray, *,
                      level_sizes: Sequence[int], score_thresh: float, score_th_on: str, pre_nms_top_n: int,
                      nms_thresh: float, detections_per_img: int) -> list[dict[str, np.ndarray]]:
    """The detector's post-processing on the graph's outputs: per image a dict of boxes [K, 4], scores [K]
    and labels [K] (1..C), best first, in the (resized) input image's pixels."""
    if score_th_on not in ("cls", "sqrt_cls_ctr"):
        raise ValueError(f"score_th_on must be 'cls' or 'sqrt_cls_ctr', got {score_th_on!r}")
    if sum(level_sizes) != boxes.shape[1]:
        raise ValueError(f"level_sizes {list(level_sizes)} sum to {sum(level_sizes)}, but the outputs hold "
                         f"{boxes.shape[1]} locations; use the sizes recorded with the exported file")
    num_classes = class_probs.shape[2]
    starts = np.cumsum([0, *level_sizes])
    results = []
    for image_boxes, probs, ctr in zip(boxes, class_probs, centerness):
        flats, scores, points = [], [], []
        for start, stop in zip(starts[:-1], starts[1:]):
            flat, score = _level_candidates(probs[start:stop], ctr[start:stop], score_thresh=score_thresh,
                                            score_th_on=score_th_on, pre_nms_top_n=pre_nms_top_n)
            flats.append(flat)
            scores.append(score)
            points.append(flat // num_classes + start)
        flat, score, point = np.concatenate(flats), np.concatenate(scores), np.concatenate(points)
        labels = flat % num_classes + 1
        candidates = image_boxes[point]
        # class-wise NMS in one pass: boxes of different classes moved apart (torchvision.ops.batched_nms)
        offsets = labels.astype(candidates.dtype) * (candidates.max(initial=0.0) + 1)
        keep = nms(candidates + offsets[:, None], score, nms_thresh)[:detections_per_img]
        results.append(dict(boxes=candidates[keep], scores=score[keep], labels=labels[keep].astype(np.int64)))
    return results


class OnnxDetector:
    """An exported detector in onnxruntime, called as the PyTorch detector is called in eval mode: each image
    resized by the detector's rule (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, bilinear), padded into the graph's
    input, run, decoded, and the boxes scaled back to the image's own pixels.

    detector = OnnxDetector("fcos.onnx"); detector([image])  # image: float32 [3, h, w], RGB 0..1
    """

    def __init__(self, path: str, *, providers: Sequence[str] = ("CPUExecutionProvider",), session_options=None):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), sess_options=session_options,
                                                    providers=list(providers))
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{path} has no {METADATA_KEY!r} metadata: it was not written by "
                             "resbone.deploy.export_onnx from a detector")
        info = json.loads(meta[METADATA_KEY])
        self.input_size = tuple(info["input_size"])
        self.num_classes = int(info["num_classes"])
        self.decode = dict(info["decode"])
        self.min_size, self.max_size = int(info["resize"]["min_size"]), int(info["resize"]["max_size"])

    def resize(self, image: np.ndarray) -> np.ndarray:
        """DetectionTransform's test-time resize (the detector normalises first; both steps are linear per
        channel, so the order changes rounding only)."""
        height, width = image.shape[1:]
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        if scale == 1.0:
            return image
        resized = torch.nn.functional.interpolate(torch.from_numpy(image)[None], scale_factor=scale, mode="bilinear",
                                                  recompute_scale_factor=True, align_corners=False)
        return resized[0].numpy()

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        height, width = self.input_size
        batch = np.zeros((len(images), 3, height, width), dtype=np.float32)
        sizes = np.zeros((len(images), 2), dtype=np.int64)
        for i, image in enumerate(images):
            image = np.asarray(image, dtype=np.float32)
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"image {i} must be float [3, H, W] (RGB, 0..1), got shape {image.shape}")
            resized = self.resize(image)
            if resized.shape[1] > height or resized.shape[2] > width:
                raise ValueError(f"image {i} ({image.shape[1]}x{image.shape[2]}) resizes to "
                                 f"{resized.shape[1]}x{resized.shape[2]}, larger than the exported input "
                                 f"{height}x{width}; export with a larger input_size")
            batch[i, :, :resized.shape[1], :resized.shape[2]] = resized
            sizes[i] = resized.shape[1:]
        outputs = self.session.run(None, {"images": batch, "image_sizes": sizes})
        results = decode_detections(*outputs, **self.decode)
        for result, image, (resized_h, resized_w) in zip(results, images, sizes):
            ratio_h, ratio_w = np.shape(image)[1] / resized_h, np.shape(image)[2] / resized_w
            result["boxes"] = result["boxes"] * np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32)
        return results
