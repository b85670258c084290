"""Finding the square crop around both hands in a frame.

A box is (x, y, w, h) in frame pixels around both hands; it is padded into a square the way the
InterHand2.6M reader pads its crops (the hands fill 70% of it), so the model sees what it was
trained on. Boxes come from `--box` (every frame), a box file (one per frame or image), or the
whole frame's centred square when nothing else is given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from apps.predict.sources import Frame, SourceError
from lagchand_edge.data.transforms import square_box

CROP_FILL = 0.7  # the reader's: the hands fill 70% of the square
Box = tuple[float, float, float, float]  # x, y, w, h around both hands
Square = tuple[float, float, float]  # x0, y0, side


def parse_box(text: str) -> Box:
    """'x,y,w,h' (pixels) -> a box; SourceError when it is not four numbers with w, h > 0."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        raise SourceError(f"box {text!r}: expected x,y,w,h in pixels with w and h > 0")
    return tuple(values)


def square_crop(box: Box, fill: float = CROP_FILL) -> Square:
    """The reader's square around a box of both hands."""
    x, y, w, h = box
    return square_box(np.array([[x, y], [x + w, y + h]]), fill)


def whole_frame(image: np.ndarray) -> Square:
    """The centred square of the frame (no box given: the hands are assumed to fill the picture)."""
    height, width = image.shape[:2]
    side = float(min(height, width))
    return ((width - side) / 2, (height - side) / 2, side)


class BoxFinder:
    """Boxes for frames: one for all (`--box`), one per frame or image name (a box file), or none (whole frame)."""

    def __init__(self, box: Box | None = None, boxes: dict[str, Box] | None = None) -> None:
        self.box, self.boxes = box, boxes

    @classmethod
    def from_file(cls, path: Path) -> BoxFinder:
        """A JSON object {image name or frame index: [x, y, w, h]}, or a text file with one 'x,y,w,h' per line (frame order)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SourceError(f"{path}: cannot read box file ({exc.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            return cls(boxes={str(i): parse_box(line) for i, line in enumerate(lines)})
        if not isinstance(data, dict):
            raise SourceError(f"{path}: expected a JSON object of name -> [x, y, w, h]")
        return cls(boxes={str(k): parse_box(",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in data.items()})

    def __call__(self, frame: Frame) -> Square | None:
        if self.boxes is not None:
            box = self.boxes.get(frame.name, self.boxes.get(str(frame.index)))
            return None if box is None else square_crop(box)
        return square_crop(self.box) if self.box is not None else whole_frame(frame.image)
