"""Finding both hands with MediaPipe's palm detector (opt-in; Apache-2.0, from the mediapipe wheel).

`palm_detection_full.tflite` (192x192 RGB in [0, 1], letterboxed) scores 2016 SSD anchors and
regresses a palm box with 7 keypoints per anchor. Decoded here in numpy: anchors, sigmoid
scores, weighted non-maximum suppression, then each palm grown into a hand box (turned by the
wrist -> middle-MCP keypoints, as MediaPipe's hand tracking does) and the two best hands joined
into one box. On video a tracker smooths the box and keeps the last one when no palm is found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from apps.predict.hands import Box, Square, square_crop
from apps.predict.sources import Frame

INPUT = 192
STRIDES = ((8, 1), (16, 3))  # (stride, SSD layers at it); 2 anchors per layer and cell: 24*24*2 + 12*12*6 = 2016
MIN_SCORE, NMS_IOU = 0.5, 0.3
HAND_SCALE, HAND_SHIFT = 2.0, 0.5  # palm box -> hand box: grow, then move towards the fingers (in palm sizes)
WRIST, MIDDLE_MCP = 0, 2  # keypoints of the palm model
SMOOTHING = 0.5  # on video: the new box's weight against the last one


def anchors() -> np.ndarray:
    """(2016, 2) anchor centres in [0, 1], in the model's output order."""
    centres = []
    for stride, layers in STRIDES:
        grid = INPUT // stride
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), 2 * layers, axis=0))
    return np.concatenate(centres)


@dataclass
class Palm:
    score: float
    box: np.ndarray  # (4,) x0, y0, x1, y1 in frame pixels
    keypoints: np.ndarray  # (7, 2) frame pixels


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model outputs (2016, 18), (2016,) -> scores, boxes (x0, y0, x1, y1) and keypoints (7, 2), in [0, 1] of the input."""
    scores = 1 / (1 + np.exp(-np.clip(raw_scores, -100, 100)))
    xy = raw_boxes[:, :2] / INPUT + centres
    half = raw_boxes[:, 2:4] / INPUT / 2
    keypoints = raw_boxes[:, 4:].reshape(-1, 7, 2) / INPUT + centres[:, None]
    return scores, np.concatenate([xy - half, xy + half], 1), keypoints


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), 1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(box) + area(others) - inter, 1e-12)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted NMS: each cluster (IoU > NMS_IOU with its best) becomes the score-weighted mean of its members."""
    order = np.argsort(-scores)
    order = order[scores[order] >= MIN_SCORE]
    kept = []
    while order.size:
        best = order[0]
        cluster = order[_iou(boxes[best], boxes[order]) > NMS_IOU]
        weights = scores[cluster] / scores[cluster].sum()
        kept.append((float(scores[best]), weights @ boxes[cluster], np.tensordot(weights, keypoints[cluster], 1)))
        order = order[~np.isin(order, cluster)]
    return kept


def hand_box(palm: Palm) -> np.ndarray:
    """The axis-aligned bounds (x0, y0, x1, y1) of the hand around a palm: a square of HAND_SCALE palm sizes,
    turned so that wrist -> middle MCP points up, moved HAND_SHIFT towards the fingers."""
    centre = (palm.box[:2] + palm.box[2:]) / 2
    size = (palm.box[2:] - palm.box[:2]).max()
    up = palm.keypoints[MIDDLE_MCP] - palm.keypoints[WRIST]
    up = up / max(np.linalg.norm(up), 1e-9)
    centre = centre + up * HAND_SHIFT * size  # towards the fingers
    side = HAND_SCALE * size
    half = side / 2 * (abs(up[0]) + abs(up[1]))  # a square turned by the palm's angle, bounded
    return np.concatenate([centre - half, centre + half])


class PalmDetector:
    """Palms in a frame (LiteRT; letterboxed to the model's square input)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: -d["shape"][-1])
        self.boxes, self.scores = outputs[0]["index"], outputs[1]["index"]
        self.centres = anchors()

    def palms(self, image: np.ndarray) -> list[Palm]:
        height, width = image.shape[:2]
        side = max(height, width)
        pad = np.array([(side - width) / 2, (side - height) / 2])
        canvas = Image.new("RGB", (side, side))
        canvas.paste(Image.fromarray(image), tuple(int(p) for p in pad))
        tensor = np.asarray(canvas.resize((INPUT, INPUT), Image.BILINEAR), np.float32)[None] / 255.0
        self.interpreter.set_tensor(self.input, tensor)
        self.interpreter.invoke()
        raw_boxes, raw_scores = self.interpreter.get_tensor(self.boxes)[0], self.interpreter.get_tensor(self.scores)[0, :, 0]
        found = weighted_nms(*decode(raw_boxes, raw_scores, self.centres))
        to_frame = lambda p: p * side - np.resize(pad, p.shape)  # noqa: E731
        return [Palm(score, to_frame(box), keypoints * side - pad) for score, box, keypoints in found]


def both_hands(palms: list[Palm]) -> Box | None:
    """The box (x, y, w, h) around the two most confident hands (or the one hand found)."""
    if not palms:
        return None
    boxes = np.stack([hand_box(p) for p in sorted(palms, key=lambda p: -p.score)[:2]])
    lo, hi = boxes[:, :2].min(0), boxes[:, 2:].max(0)
    return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


class DetectorFinder:
    """Boxes from the palm detector; on video a tracker smooths them and keeps the last one when no palm is found."""

    def __init__(self, detector: PalmDetector, smoothing: float = SMOOTHING, track: bool = True) -> None:
        self.detector, self.smoothing, self.track = detector, smoothing, track
        self.last: Square | None = None

    def __call__(self, frame: Frame) -> Square | None:
        box = both_hands(self.detector.palms(frame.image))
        if box is None:
            return self.last  # None without tracking, or before the first palm
        square = square_crop(box)
        if self.track and self.last is not None:
            square = tuple(self.smoothing * new + (1 - self.smoothing) * old for new, old in zip(square, self.last, strict=True))
        self.last = square if self.track else None
        return square


def square_finder(path: Path) -> Callable[[np.ndarray], Square | None]:
    """RGB image -> the crop square around both hands, or None: the detector for still photos (calibration sets)."""
    finder = DetectorFinder(PalmDetector(path), track=False)
    return lambda image: finder(Frame(0, "photo", image))
