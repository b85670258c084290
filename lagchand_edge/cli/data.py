"""`lagchand-edge data ...`: synthesise, inspect and picture InterHand2.6M-format data."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from lagchand_edge.cli.common import emit_json, progress_bar, stdout
from lagchand_edge.data.records import describe_skipped
from lagchand_edge.errors import UserError

app = typer.Typer(help="Synthetic InterHand2.6M-format data: generate, summarise, draw.", no_args_is_help=True)


@app.command()
def synth(
    out: Path = typer.Option(..., help="Folder to create (release layout)."),
    num: int = typer.Option(16, min=1, help="Number of two-hand samples."),
    seed: int = typer.Option(0, help="Seed; the same seed gives the same images."),
    split: str = typer.Option("test", help="train, val or test."),
    size: int = typer.Option(256, min=64, help="Image width and height in pixels."),
    workers: int = typer.Option(0, help="Render processes (0 = up to 2)."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Render NUM samples of two interacting procedural hands with every annotation file."""
    from lagchand_edge.data.synth import write_dataset

    start = time.perf_counter()
    with progress_bar("rendering", num) as advance:
        write_dataset(out, num, seed, split, (size, size), workers or None, advance, force)
    elapsed = time.perf_counter() - start
    print_data_summary(out, split, as_json, extra={"seconds": round(elapsed, 2), "images_per_second": round(num / elapsed, 1)})


def dataset_summary(root: Path, split: str, check_images: bool = False) -> dict:
    """What the annotations index; with `check_images`, every sample is also read as `evaluate`
    and `drift` read it, so images that cannot be decoded count as skipped, not as samples."""
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.data.records import SampleError

    dataset = InterHandDataset(root, split, strict=False)
    captures = sorted({r.sample_id.split("/")[0] for r in dataset.records})
    skipped, samples = dict(dataset.skipped), len(dataset)
    if check_images:
        with progress_bar("reading images", len(dataset)) as advance:
            for index in range(len(dataset)):
                try:
                    dataset.load(index)
                except SampleError as exc:
                    skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                    samples -= 1
                advance(1)
    return {"root": str(root), "split": split, "samples": samples, "captures": len(captures),
            "has_mesh": dataset.has_mesh, "skipped": skipped,
            "images": "all read" if check_images else "not read (--check-images reads each, as evaluate and drift do)",
            "hand_model": None if dataset.hands is None else dataset.hands["right"].name}


def print_data_summary(root: Path, split: str, as_json: bool, extra: dict | None = None, check_images: bool = False) -> None:
    summary = dataset_summary(root, split, check_images) | (extra or {})
    if as_json:
        emit_json(summary)
        return
    table = Table(title=f"InterHand2.6M-format data: {root}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, describe_skipped(value) if key == "skipped" else str(value))
    stdout.print(table)


@app.command()
def summary(
    root: Path = typer.Argument(..., help="Data folder (release layout)."),
    split: str = typer.Option("test", help="train, val or test."),
    check_images: bool = typer.Option(False, "--check-images", help="Also read every image (as evaluate and drift do): unreadable "
                                                                    "ones count as skipped. Slow on a full release."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (nothing else on stdout)."),
) -> None:
    """Count the two-hand samples a folder holds and what was skipped."""
    print_data_summary(root, split, as_json, check_images=check_images)


@app.command()
def show(
    root: Path = typer.Argument(..., help="Data folder (release layout)."),
    index: list[int] = typer.Option([0], help="Sample index; repeat it for a grid, one sample per row."),
    out: Path = typer.Option(..., help="PNG to write."),
    split: str = typer.Option("test", help="train, val or test."),
    mano_dir: Path = typer.Option(None, help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl for real data."),
    predict: bool = typer.Option(False, "--predict", help="Also draw the model's prediction beside the ground truth."),
    checkpoint: Path = typer.Option(None, help="The checkpoint that predicts (implies --predict); default: the bundled one."),
) -> None:
    """Draw cropped samples with both GT meshes and skeletons (left blue, right orange), and a model's prediction beside them."""
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.viz import draw_hands, grid

    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out {out}: name a .png (or .jpg) file to write")
    dataset = InterHandDataset(root, split, mano_dir=mano_dir)
    for i in index:
        if not 0 <= i < len(dataset):
            raise UserError(f"--index {i} is out of range: {root} has {len(dataset)} samples")
    faces = None if dataset.hands is None else {s: h.faces for s, h in dataset.hands.items()}
    model = _predictor(checkpoint, dataset.hands) if predict or checkpoint is not None else None
    rows, ids = [], []
    for i in index:
        sample = dataset.load(i)
        row = [draw_hands(sample["image"], sample["joints_2d"], sample["vertices_2d"], faces, joint_valid=sample["joint_valid"])]
        if model is not None:
            joints_2d, vertices_2d, model_faces = model(sample["image"])
            row.append(draw_hands(sample["image"], joints_2d, vertices_2d, model_faces))
        rows.append(row)
        ids.append(sample["sample_id"])
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(rows).save(out)
    what = "ground truth | prediction" if model is not None else "ground truth"
    stdout.print(f"wrote {out} ({what}; {', '.join(ids)})")


def _predictor(checkpoint: Path, hands):
    """image (H, W, 3) uint8 -> the checkpoint's predicted 2D joints, vertices and mesh faces in the crop."""
    from lagchand_edge.checkpoint import checkpoint_predictor
    from lagchand_edge.data.transforms import to_model_input
    from lagchand_edge.hand.joints import HAND_NAMES
    from lagchand_edge.model import HandPrediction

    call, model = checkpoint_predictor(checkpoint, hands)
    faces = {side: model.faces[h].numpy() for h, side in enumerate(HAND_NAMES)}

    def predict(image):
        prediction = HandPrediction.from_outputs(call(to_model_input(image[None].copy()).numpy()))
        joints_2d, vertices_2d = prediction.project(image.shape[0])
        return joints_2d[0], vertices_2d[0], faces

    return predict


@app.command()
def bench(
    num: int = typer.Option(40, min=1, help="Samples to render."),
    size: int = typer.Option(256, min=64, help="Image width and height in pixels."),
    workers: int = typer.Option(0, help="Render processes (0 = up to 2)."),
) -> None:
    """Measure synthetic rendering throughput (images/s, JPEG writing included)."""
    import tempfile

    from lagchand_edge.data.synth import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_dataset(Path(tmp) / "bench", num, 0, "test", (size, size), workers or None)
        elapsed = time.perf_counter() - start
    stdout.print(f"rendered {num} images at {size}x{size} in {elapsed:.2f} s: {num / elapsed:.1f} images/s")


@app.command()
def stats(
    root: Path = typer.Argument(..., help="Data folder (release layout, or a flattened copy like the real sample)."),
    split: str = typer.Option("test", help="train, val or test."),
    compare: list[Path] = typer.Option([], help="Another root to put beside it (repeatable), e.g. the real InterHand2.6M sample."),
    compare_split: str = typer.Option("test", help="Split of the --compare roots."),
    num: int = typer.Option(2000, help="At most this many evenly spaced samples per root."),
    plot: Path = typer.Option(None, help="Also draw the distributions as histograms into this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """How hands sit relative to the camera: orientation, palm facing, size in the crop, distance apart."""
    from lagchand_edge.data.stats import QUANTILES, STATISTICS, dataset_statistics, plot_statistics

    if num < 1:
        raise UserError("--num must be at least 1")
    if plot is not None and plot.suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: expected a .png file name")
    summaries = [dataset_statistics(root, split, num)] + [dataset_statistics(other, compare_split, num) for other in compare]
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot_statistics(summaries, plot)
    if as_json:
        emit_json([{k: v for k, v in s.items() if k != "values"} for s in summaries])
        return
    table = Table(title="Scene statistics (per hand; distance per pair)")
    table.add_column("statistic")
    table.add_column("root")
    table.add_column("n", justify="right")
    for q in QUANTILES:
        table.add_column(f"p{q}", justify="right")
    for name in STATISTICS:
        for summary in summaries:
            entry = summary["statistics"][name]
            cells = ["-" if entry[f"p{q}"] is None else f"{entry[f'p{q}']:.0f}" for q in QUANTILES]
            table.add_row(f"{name}", Path(summary["root"]).name, str(entry["n"]), *cells)
    stdout.print(table)
    shares = Table(title="Share of hands")
    shares.add_column("")
    for summary in summaries:
        shares.add_column(Path(summary["root"]).name, justify="right")
    for name in summaries[0]["shares"]:
        shares.add_row(name, *["-" if s["shares"][name] is None else f"{s['shares'][name]:.0%}" for s in summaries])
    stdout.print(shares)
    for name, (_, meaning) in STATISTICS.items():
        stdout.print(f"[dim]{name}: {meaning}[/]")
    if plot is not None:
        stdout.print(f"wrote {plot}")


@app.command()
def cache(
    root: Path = typer.Argument(..., help="Data folder (release layout)."),
    out: Path = typer.Option(..., help="Cache folder to create."),
    split: str = typer.Option("test", help="train, val or test."),
    mano_dir: Path = typer.Option(None, help="Folder with MANO_RIGHT.pkl / MANO_LEFT.pkl for real data."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
    workers: int = typer.Option(2, min=0, help="Reader processes (0: this one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Decode and crop a split once (memory-mapped arrays): train and evaluate take the cache wherever they take a root."""
    from lagchand_edge.data.cache import write_cache
    from lagchand_edge.data.interhand import InterHandDataset

    total = len(InterHandDataset(root, split, mano_dir=mano_dir, strict=False))
    with progress_bar("caching", total) as advance:
        card = write_cache(root, split, out, mano_dir, advance, force, workers)
    summary = {k: v for k, v in card.items() if k != "sample_ids"} | {"out": str(out)}
    if as_json:
        emit_json(summary)
        return
    stdout.print(f"wrote {out}: {card['samples']} samples of {root} (split {split}), {describe_skipped(card['skipped'])}", highlight=False)
