"""`python3 -m apps.predict SOURCE --artifact DIR [--box x,y,w,h | --boxes FILE | --detector PALM.tflite] [--out DIR] [--sheet PNG]`:
the app without torch (LiteRT)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from apps.predict.draw import mesh_edges
from apps.predict.hands import BoxFinder, parse_box
from apps.predict.model import open_artifact
from apps.predict.pipeline import Outputs, run
from apps.predict.sources import SourceError, open_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("source", help="image, folder of images, video file or camera index")
    parser.add_argument("--artifact", type=Path, required=True, help="an artifact folder (tflite runs without torch)")
    parser.add_argument("--box", help="x,y,w,h around both hands, for every frame")
    parser.add_argument("--boxes", type=Path, help="box file: JSON {name: [x,y,w,h]} or one x,y,w,h per line")
    parser.add_argument("--detector", type=Path, help="palm_detection_full.tflite (MediaPipe, Apache-2.0) to find the hands")
    parser.add_argument("--out", type=Path, help="folder for annotated pictures / video and predictions.jsonl")
    parser.add_argument("--sheet", type=Path, help="contact sheet PNG: inputs and predictions side by side")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model and the detector (default: the runtime's choice)")
    args = parser.parse_args(argv)
    try:
        if args.threads is not None and args.threads < 1:
            raise SourceError(f"--threads must be >= 1, not {args.threads}")
        model, manifest, faces = open_artifact(args.artifact, args.threads)
        find = BoxFinder.from_file(args.boxes) if args.boxes else BoxFinder(parse_box(args.box) if args.box else None)
        source = open_source(args.source, args.max_frames)
        if args.detector is not None:
            from apps.predict.detector import DetectorFinder, PalmDetector

            find = DetectorFinder(PalmDetector(args.detector, args.threads), track=source.kind in ("video", "camera"))
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
        edges = None if faces is None else mesh_edges(faces[0])
        size = manifest["inputs"][0]["shape"][2]  # the square crop: axis 2 in NCHW and NHWC alike
        summary = run(source, model, find, Outputs(args.out, args.sheet, source.fps), edges, size,
                      on_frame=lambda frame, error: error and print(f"error: {error}", file=sys.stderr))
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"}))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
