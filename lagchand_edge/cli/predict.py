"""`lagchand-edge predict`: any artifact (or checkpoint) on your own photos, videos or camera."""

from __future__ import annotations

from pathlib import Path

import typer

from lagchand_edge.cli.common import console, emit_json, progress_bar, stdout


def predict(
    source: str = typer.Argument(..., help="An image, a folder of images, a video file (.mp4, .gif, ...) or a camera index (0)."),
    artifact: Path = typer.Option(None, help="Artifact folder to run (any target; CoreML through coreml-sim off macOS)."),
    checkpoint: Path = typer.Option(None, help="Run this checkpoint in PyTorch instead (default without --artifact: the bundled one)."),
    box: str = typer.Option(None, help="x,y,w,h (pixels) around both hands, for every frame; padded into the square crop as the reader pads."),
    boxes: Path = typer.Option(None, help="Box file: JSON {image name or frame index: \\[x, y, w, h]} or one x,y,w,h per line."),
    detect: bool = typer.Option(False, "--detect", help="Find the hands with MediaPipe's palm detector (opt-in, Apache-2.0; "
                                "`anchors fetch` downloads it once); on video the box is smoothed and kept when a frame has no palm."),
    out: Path = typer.Option(Path("runs/predict"), help="Folder for annotated pictures (or predicted.mp4) and predictions.jsonl."),
    sheet: Path = typer.Option(None, help="Also write a contact sheet (PNG): each input beside its prediction."),
    max_frames: int = typer.Option(None, min=1, help="Stop after this many frames (videos, cameras)."),
    wireframe: bool = typer.Option(True, "--wireframe/--skeleton-only", help="Draw the mesh wireframe, or the skeletons alone."),
    threads: int = typer.Option(None, min=1, help="CPU threads for the model and the palm detector (default: the runtime's own choice; "
                                "the detector 2)."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (frames, failed, fps, ms per frame by stage)."),
) -> None:
    """Find both hands, run the model, draw them on each frame; exit 1 if any frame failed."""
    from apps.predict.draw import mesh_edges
    from apps.predict.hands import BoxFinder, parse_box
    from apps.predict.pipeline import Outputs, run
    from apps.predict.sources import SourceError, open_source
    from lagchand_edge.errors import UserError
    from lagchand_edge.io import atomic_dir

    if artifact is not None and checkpoint is not None:
        raise UserError("give --artifact or --checkpoint, not both")
    if sum(x is not None and x is not False for x in (box, boxes, detect)) > 1:
        raise UserError("give one of --box, --boxes and --detect")
    if sheet is not None and sheet.suffix.lower() != ".png":
        raise UserError(f"--sheet {sheet}: expected a .png file name")
    try:
        find = BoxFinder.from_file(boxes) if boxes else BoxFinder(parse_box(box) if box else None)
        src = open_source(source, max_frames)  # a bad source is said before a runtime starts and prints its own lines
        model, faces, size = _model(artifact, checkpoint, threads)
        if detect:
            from apps.predict.detector import DetectorFinder, PalmDetector
            from lagchand_edge.profile.anchors import cached_detector

            find = DetectorFinder(PalmDetector(cached_detector(), threads=threads or 2), track=src.kind in ("video", "camera"))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    edges = mesh_edges(faces[1]) if wireframe and faces is not None else None
    with atomic_dir(out, force=force) as tmp, progress_bar("predicting", src.count) as advance:
        def on_frame(frame, error) -> None:
            advance(1)
            if error:
                console.print(f"[yellow]frame failed:[/] {error}", highlight=False, soft_wrap=True)

        summary = run(src, model, find, Outputs(tmp, sheet, src.fps), edges, size, on_frame)
    if as_json:
        emit_json(summary | {"out": str(out), "threads": threads})
    else:
        ms = summary["ms_per_frame"]
        parts = ", ".join(f"{stage} {ms[stage]:.1f}" for stage in ms if ms[stage] is not None)
        fps = "-" if summary["fps"] is None else f"{summary['fps']:.1f}"
        stdout.print(f"{summary['frames']} frames ({summary['failed']} failed) -> {out}; {fps} FPS (ms per frame: {parts}; "
                     f"{summary['wall_fps']:.1f} FPS with reading and writing)", highlight=False)
        if sheet is not None:
            stdout.print(f"contact sheet: {sheet}")
    if summary["failed"]:
        raise typer.Exit(1)


def _model(artifact: Path | None, checkpoint: Path | None, threads: int | None):
    """(images -> vertices, joints, camera), the meshes' faces (2, F, 3) or None, the input size."""
    if artifact is not None:
        import numpy as np

        from lagchand_edge.artifact import load_runner
        from lagchand_edge.convert import HAND_FACES

        runner = load_runner(artifact, threads)
        if runner.manifest.get("foreign"):
            from lagchand_edge.errors import UserError

            raise UserError(f"{artifact}: predict needs a lagchand-edge artifact folder (with manifest.json)")
        faces = np.load(artifact / HAND_FACES) if (artifact / HAND_FACES).is_file() else None
        return (lambda images: tuple(runner.raw([images])[:3])), faces, runner.manifest["inputs"][0]["shape"][2]  # NCHW and NHWC alike
    import torch

    from lagchand_edge.checkpoint import checkpoint_predictor

    if threads is not None:
        torch.set_num_threads(threads)
    call, model = checkpoint_predictor(checkpoint)
    return call, model.faces.numpy(), model.cfg.image_size
