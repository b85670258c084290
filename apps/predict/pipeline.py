"""The predict pipeline: frames -> crop around both hands -> model -> hands in the frame -> pictures and JSON.

Each frame is timed in three parts (finding the hands, inference with its crop, drawing); a frame
that fails (unreadable, no box) is reported and the others carry on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from apps.predict.decode import FrameHands, decode
from apps.predict.draw import draw_frame
from apps.predict.model import Model
from apps.predict.sources import Frame, Source
from lagchand_edge.data.transforms import crop_image

STAGES = ("find", "infer", "draw")
SHEET_TILE = 256


@dataclass
class Outputs:
    """Where results go: annotated pictures (or one video), predictions.jsonl, an optional contact sheet."""

    folder: Path | None
    sheet: Path | None = None
    video_fps: float | None = None
    tiles: list[Image.Image] = field(default_factory=list)
    video: object = None
    gif: list[Image.Image] = field(default_factory=list)

    def frame(self, source: Source, frame: Frame, picture: Image.Image) -> None:
        if self.sheet is not None:
            self.tiles += [_tile(Image.fromarray(frame.image)), _tile(picture)]
        if self.folder is None:
            return
        if source.kind in ("image", "folder"):
            picture.save(self.folder / f"{Path(frame.name).stem}.png")
        else:
            self._video_frame(picture)

    def _video_frame(self, picture: Image.Image) -> None:
        try:
            import cv2
        except ImportError:  # GIF sources run without OpenCV: write a GIF back
            self.gif.append(picture)
            return
        if self.video is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.video = cv2.VideoWriter(str(self.folder / "predicted.mp4"), fourcc, self.video_fps or 25.0, picture.size)
        self.video.write(cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
        if self.gif:
            self.gif[0].save(self.folder / "predicted.gif", save_all=True, append_images=self.gif[1:],
                             duration=int(1000 / (self.video_fps or 10)), loop=0)
        if self.sheet is not None and self.tiles:
            _contact_sheet(self.tiles, self.sheet)


def _tile(picture: Image.Image) -> Image.Image:
    tile = picture.copy()
    tile.thumbnail((SHEET_TILE, SHEET_TILE))
    canvas = Image.new("RGB", (SHEET_TILE, SHEET_TILE), (24, 24, 24))
    canvas.paste(tile, ((SHEET_TILE - tile.width) // 2, (SHEET_TILE - tile.height) // 2))
    return canvas


def _contact_sheet(tiles: list[Image.Image], path: Path, pairs_per_row: int = 3) -> None:
    """Input and prediction side by side, a few pairs per row."""
    pairs = len(tiles) // 2
    columns = 2 * min(pairs_per_row, pairs)
    rows = -(-pairs // pairs_per_row)
    sheet = Image.new("RGB", (columns * SHEET_TILE, rows * SHEET_TILE), (255, 255, 255))
    for i, tile in enumerate(tiles):
        pair, side = divmod(i, 2)
        sheet.paste(tile, ((pair % pairs_per_row * 2 + side) * SHEET_TILE, pair // pairs_per_row * SHEET_TILE))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def predict_frame(frame: Frame, model: Model, find: Callable[[Frame], tuple | None], image_size: int,
                  edges: np.ndarray | None) -> tuple[FrameHands, Image.Image, dict[str, float]]:
    """One frame through the three stages, with each stage's milliseconds; ValueError when no box is found."""
    times = {}
    start = time.perf_counter()
    square = find(frame)
    times["find"] = (time.perf_counter() - start) * 1000
    if square is None:
        raise ValueError(f"{frame.name}: no hands found (no box for this frame)")
    start = time.perf_counter()
    crop = np.asarray(crop_image(Image.fromarray(frame.image), square, image_size), dtype=np.float32)
    vertices, joints, camera = model(np.ascontiguousarray(crop.transpose(2, 0, 1)[None] / 255.0))
    hands = decode(np.asarray(vertices)[0], np.asarray(joints)[0], np.asarray(camera)[0], square, image_size)
    times["infer"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    picture = draw_frame(frame.image, hands, edges)
    times["draw"] = (time.perf_counter() - start) * 1000
    return hands, picture, times


def run(source: Source, model: Model, find: Callable[[Frame], tuple | None], outputs: Outputs, edges: np.ndarray | None = None,
        image_size: int = 256, on_frame: Callable[[Frame, str | None], None] | None = None) -> dict:
    """Every frame of `source`; returns the summary (frames, failed, fps, ms per frame by stage)."""
    spent = {stage: [] for stage in STAGES}
    frames, errors = 0, []
    started = time.perf_counter()
    records = open(outputs.folder / "predictions.jsonl", "w") if outputs.folder is not None else None
    try:
        for frame in source.frames:
            frames += 1
            error = frame.error
            if error is None:
                try:
                    hands, picture, times = predict_frame(frame, model, find, image_size, edges)
                except ValueError as exc:
                    error = str(exc)
                else:
                    for stage, ms in times.items():
                        spent[stage].append(ms)
                    outputs.frame(source, frame, picture)
                    if records:
                        records.write(json.dumps({"frame": frame.index, "name": frame.name, **hands.to_json()}) + "\n")
            if error is not None:
                errors.append(error)
                if records:
                    records.write(json.dumps({"frame": frame.index, "name": frame.name, "error": error}) + "\n")
            if on_frame:
                on_frame(frame, error)
    finally:
        if records:
            records.close()
        outputs.close()
    wall = time.perf_counter() - started
    per_frame = {stage: float(np.mean(values)) if values else None for stage, values in spent.items()}
    work = sum(v for v in per_frame.values() if v is not None)
    return {"source": source.kind, "frames": frames, "failed": len(errors), "errors": errors,
            "fps": 1000.0 / work if work else None, "wall_fps": frames / wall if wall else None,
            "ms_per_frame": {k: None if v is None else round(v, 3) for k, v in per_frame.items()}}
