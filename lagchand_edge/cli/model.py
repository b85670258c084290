"""`lagchand-edge info | train | evaluate`: the FP32 reference model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lagchand_edge.cli.common import emit_json, progress_bar, stdout


def info(
    config: str = typer.Option("reference", help="Model configuration."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Parameters and MACs/FLOPs per module at 256x256, in the shape of the paper's Table 2."""
    from lagchand_edge.model import create_model
    from lagchand_edge.model.flops import count_model

    model = create_model(config)
    report = count_model(model) | {"deployed_gmacs": count_model(model, with_heatmaps=False)["gmacs"]}
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"LAGCHand '{config}' at 256x256 (MACs counted as fvcore/thop do: conv, linear, matmul; FLOPs = 2 x MACs)")
    for column in ("module", "params (M)", "GMACs", "GFLOPs"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for row in report["modules"]:
        table.add_row(row["module"], f"{row['params'] / 1e6:.3f}", f"{row['macs'] / 1e9:.3f}", f"{row['flops'] / 1e9:.3f}")
    stdout.print(table)
    stdout.print(f"deployed artifacts: {report['deployed_gmacs']:.3f} GMACs (the 64 px heatmap stage is a training target only)")


def train(
    data: Path = typer.Option(..., help="InterHand2.6M-format root with a 'train' split."),
    out: Path = typer.Option(Path("runs/lagchand.safetensors"), help="Checkpoint to write (.safetensors + .json sidecar)."),
    config: str = typer.Option("reference"),
    epochs: int = typer.Option(10, min=1),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-4, help="Adam learning rate (decays 10x at half the epochs, paper §4.1)."),
    seed: int = typer.Option(0),
    limit: int = typer.Option(None, help="Use only the first N samples."),
    resume: bool = typer.Option(False, help="Continue from OUT's last finished epoch."),
    init: Path = typer.Option(None, help="Start from this checkpoint's weights (fine-tuning; fresh optimizer)."),
    loss_weight: list[str] = typer.Option([], help="Override a loss weight, e.g. heatmap=1000 (repeatable)."),
    edge_from: float = typer.Option(0.5, min=0.0, max=1.0, help="Fraction of epochs before the edge loss joins (IntagHand: 0.5; 0 to fine-tune)."),
    bf16: bool = typer.Option(False, "--bf16", help="Mixed precision: forward pass under bf16 autocast (weights, optimizer, losses stay fp32)."),
    mano_dir: Path = typer.Option(None, help="MANO_RIGHT/LEFT.pkl folder, for the real release."),
) -> None:
    """Train LAGCHand with IntagHand's losses; works unchanged under torchrun (DDP)."""
    from lagchand_edge.train.loop import TrainOptions
    from lagchand_edge.train.loop import train as run
    from lagchand_edge.train.losses import parse_weights

    options = TrainOptions(data=data, out=out, config=config, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           limit=limit, resume=resume, init=init, weights=parse_weights(loss_weight), edge_from=edge_from, bf16=bf16,
                           mano_dir=mano_dir)
    with progress_bar("training", None) as advance:
        def on_step(epoch: int, step: int, losses: dict) -> None:
            advance(1, info=f"epoch {epoch + 1}/{epochs} step {step} loss {losses['loss']:.4f}")

        result = run(options, on_step)
    if result:
        last = result["history"][-1]
        stdout.print(f"wrote {out} (epoch {result['epoch']}, loss {last['loss']:.4f})")


def evaluate(
    data: Path = typer.Option(..., help="InterHand2.6M-format root."),
    checkpoint: Path = typer.Option(None, help="Checkpoint (.safetensors); default: the bundled reference."),
    split: str = typer.Option("test"),
    num: int = typer.Option(None, help="Evaluate only the first N samples."),
    batch_size: int = typer.Option(16, min=1),
    baseline_from: Path = typer.Option(None, help="Also score a mean-pose baseline: the mean hands of this root's train split."),
    mano_dir: Path = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """MPJPE / MPVPE (mm, IntagHand protocol) per hand and per joint, on CUDA when available."""
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.evaluate import MeanPoseBaseline, evaluate_model, mean_hands

    dataset = InterHandDataset(data, split, mano_dir=mano_dir, strict=False, limit=num)
    model = load_checkpoint(checkpoint, hands=dataset.hands)
    with progress_bar("evaluating", len(dataset)) as advance:
        results = {"model": evaluate_model(model, dataset, batch_size, progress=advance)}
    if baseline_from is not None:
        train_set = InterHandDataset(baseline_from, "train", mano_dir=mano_dir, strict=False)
        baseline = MeanPoseBaseline(*mean_hands(train_set))
        results["mean_pose_baseline"] = evaluate_model(baseline, dataset, batch_size)
        results["ratio_to_baseline"] = results["model"]["mpjpe"] / results["mean_pose_baseline"]["mpjpe"]
    results["skipped"] = dict(dataset.skipped)
    if as_json:
        emit_json(results)
        return
    table = Table(title=f"{data} [{split}] - {results['model']['samples']} samples, {results['model']['device']}")
    table.add_column("predictor")
    columns = ("mpjpe", "mpjpe_left", "mpjpe_right", "mpvpe", "pa_mpjpe", "rotation_error_deg_median")
    for column in ("MPJPE mm", "left", "right", "MPVPE mm", "PA-MPJPE mm", "rotation err° (median)"):
        table.add_column(column, justify="right")
    for name in ("model", "mean_pose_baseline"):
        if name in results:
            m = results[name]
            table.add_row(name, *(f"{m[k]:.2f}" if k in m else "-" for k in columns))
    stdout.print(table)
    if "ratio_to_baseline" in results:
        stdout.print(f"MPJPE ratio to the mean-pose baseline: {results['ratio_to_baseline']:.3f}")
