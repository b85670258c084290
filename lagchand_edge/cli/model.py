"""`lagchand-edge info | train | evaluate`: the FP32 reference model."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from lagchand_edge.cli.common import console, emit_json, progress_bar, renamed, stdout
from lagchand_edge.data.records import UNREADABLE_AT_LOAD, describe_skipped

LOG_EVERY = 100  # training steps between log lines when stderr is not a terminal


def info(
    config: str = typer.Option("reference", help="Model configuration."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (nothing else on stdout)."),
) -> None:
    """Parameters and MACs/FLOPs per module at 256x256, in the shape of the paper's Table 2."""
    from lagchand_edge.model import create_model
    from lagchand_edge.model.flops import count_model, deployed_macs

    model = create_model(config)
    report = count_model(model) | {"deployed_gmacs": deployed_macs(model) / 1e9}
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"LAGCHand '{config}' at 256x256 (MACs counted as fvcore/thop do: conv, linear, matmul; FLOPs = 2 x MACs)")
    for column in ("module", "params (M)", "GMACs", "GFLOPs"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for row in report["modules"]:
        table.add_row(row["module"], f"{row['params'] / 1e6:.3f}", f"{row['macs'] / 1e9:.3f}", f"{row['flops'] / 1e9:.3f}")
    stdout.print(table)
    stdout.print(f"deployed artifacts: {report['deployed_gmacs']:.3f} GMACs (no 64 px heatmap stage, a training target only; "
                 "queries projected for the vertex tokens only)")


def train(
    data: Path = typer.Option(..., help="InterHand2.6M-format root with a 'train' split, or a cache of one (`data cache`)."),
    out: Path = typer.Option(Path("runs/lagchand.safetensors"), help="Checkpoint to write (.safetensors + .json sidecar)."),
    config: str = typer.Option("reference", help="Model configuration (reference, reference-mhsa, lite, tiny)."),
    epochs: int = typer.Option(10, min=1, help="Passes over the training data."),
    batch_size: int = typer.Option(16, min=1, help="Samples per step (per process under torchrun)."),
    lr: float = typer.Option(1e-4, help="Adam learning rate (peak, for --schedule cosine)."),
    schedule: str = typer.Option("step", help="step: lr / 10 at half-way (paper section 4.1); cosine: linear warm-up, then cosine to 0."),
    warmup: float = typer.Option(0.03, min=0.0, max=0.5, help="Fraction of training that warms up (cosine)."),
    seed: int = typer.Option(0, help="Seed for weights, shuffling and augmentation."),
    num: int = typer.Option(None, min=1, help="Use only the first N samples (as --num does everywhere)."),
    limit: int = typer.Option(None, min=1, hidden=True, help="Old name of --num, kept for one release."),
    resume: bool = typer.Option(False, help="Continue from OUT's last finished epoch."),
    force: bool = typer.Option(False, help="Replace OUT if it exists (without it, an existing OUT is refused unless --resume)."),
    init: Path = typer.Option(None, help="Start from this checkpoint's weights (fine-tuning; fresh optimizer)."),
    loss_weight: list[str] = typer.Option([], help="Override a loss weight, e.g. heatmap=1000 (repeatable)."),
    edge_from: float = typer.Option(0.5, min=0.0, max=1.0, help="Fraction of training before the edge loss joins (IntagHand: 0.5; 0 to fine-tune)."),
    bf16: bool = typer.Option(False, "--bf16", help="Mixed precision: forward pass under bf16 autocast (weights, optimizer, losses stay fp32)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Flip (hands swapped), crop and colour jitter."),
    clip_grad: float = typer.Option(None, min=0.0, help="Clip the gradient's global norm to this (none by default)."),
    budget_minutes: float = typer.Option(None, min=0.1, help="Train for this long (the schedule follows the clock), then stop: "
                                         "recipes compared at equal compute."),
    val_data: Path = typer.Option(None, help="Validate after every epoch on this root's (or cache's) 'val' split: "
                                  "MPJPE ratio to the mean-pose baseline."),
    val_num: int = typer.Option(300, min=1, help="Validation samples."),
    mano_dir: Path = typer.Option(None, help="MANO_RIGHT/LEFT.pkl folder, for the real release."),
    workers: int = typer.Option(0, min=0, help="Processes that read and collate batches (0: the training process; a GPU wants several)."),
) -> None:
    """Train LAGCHand with IntagHand's losses; works unchanged under torchrun (DDP)."""
    from lagchand_edge.train.loop import TrainOptions
    from lagchand_edge.train.loop import train as run
    from lagchand_edge.train.losses import parse_weights

    options = TrainOptions(data=data, out=out, config=config, epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, warmup=warmup,
                           seed=seed, limit=renamed(num, limit, "--num", "--limit"), resume=resume, force=force, init=init,
                           weights=parse_weights(loss_weight), edge_from=edge_from,
                           bf16=bf16, augment=augment, clip_grad=clip_grad, budget_minutes=budget_minutes, val_data=val_data,
                           val_num=val_num, mano_dir=mano_dir, workers=workers)
    started = time.perf_counter()
    with progress_bar("training", None) as advance:
        def on_step(epoch: int, step: int, losses: dict) -> None:
            status = f"epoch {epoch + 1}/{epochs} step {step} loss {losses['loss']:.4f}"
            advance(1, info=status)
            if not console.is_terminal and step % LOG_EVERY == 0:  # a log file (nohup, CI) gets a line now and then instead of a bar
                console.print(f"{time.perf_counter() - started:8.0f} s  {status}", highlight=False)

        result = run(options, on_step)
    if result:
        last = result["history"][-1]
        stdout.print(f"wrote {out} (epoch {result['epoch']}, loss {last['loss']:.4f})")
        if "val_ratio" in last:
            minutes = sum(h["seconds"] for h in result["history"]) / 60
            stdout.print(f"validation after {minutes:.1f} min of training: MPJPE {last['val_mpjpe']:.2f} mm, ratio to the mean-pose baseline "
                         f"{last['val_ratio']:.3f}, rotation error {last['val_rotation_deg']:.1f} deg, "
                         f"2D joint error {last['val_joint_2d_px']:.1f} px (medians)")


def _scored_by_all_ranks(ranks, predictor, dataset, batch_size: int, label: str) -> dict | None:
    """`predictor`'s metrics over the data set, each torchrun rank scoring its block (None off rank 0)."""
    from lagchand_edge.evaluate import sample_errors, score

    block = ranks.block(len(dataset), batch_size)
    with progress_bar(label, len(dataset), shown=ranks.leader) as advance:
        parts = ranks.gather(lambda tick: sample_errors(predictor, dataset, block, batch_size, progress=tick), advance)
    return None if parts is None else score(parts)


def evaluate(
    data: Path = typer.Option(..., help="InterHand2.6M-format root, or a cache of one (`data cache`)."),
    checkpoint: Path = typer.Option(None, help="Checkpoint (.safetensors); default: the bundled reference."),
    split: str = typer.Option("test", help="train, val or test."),
    num: int = typer.Option(None, min=1, help="Evaluate only the first N samples."),
    batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
    baseline_from: Path = typer.Option(None, help="Also score a mean-pose baseline: the mean hands of this root's (or cache's) train split."),
    mano_dir: Path = typer.Option(None, help="MANO_RIGHT/LEFT.pkl folder, for the real release."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable record, naming it (default: skip and count it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """MPJPE / MPVPE (mm, IntagHand protocol) per hand and per joint, on CUDA when available.

    Under `torchrun --nproc_per_node P -m lagchand_edge evaluate ...` each rank scores its block
    of the data and rank 0 prints what one process would have printed.
    """
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.cache import open_dataset
    from lagchand_edge.distributed import process_group, reference_device
    from lagchand_edge.evaluate import MeanPoseBaseline, mean_hands

    with process_group() as ranks:
        dataset = open_dataset(data, split, mano_dir, limit=num, strict=strict)
        model = load_checkpoint(checkpoint, hands=dataset.hands)
        results = {"model": _scored_by_all_ranks(ranks, model, dataset, batch_size, "evaluating")}
        if baseline_from is not None:
            baseline = MeanPoseBaseline(*mean_hands(open_dataset(baseline_from, "train", mano_dir)))
            results["mean_pose_baseline"] = _scored_by_all_ranks(ranks, baseline, dataset, batch_size, "mean-pose baseline")
    if not ranks.leader:
        return  # rank 0 prints for the launch
    results["model"]["device"] = str(reference_device())
    if baseline_from is not None:
        results["ratio_to_baseline"] = results["mpjpe_ratio"] = results["model"]["mpjpe"] / results["mean_pose_baseline"]["mpjpe"]
    results["rotation_err_deg_median"] = results["model"]["rotation_error_deg_median"]
    results["joint_2d_err_px_median"] = results["model"]["joint_2d_err_px_median"]
    unreadable = len(dataset) - results["model"]["samples"]  # indexed, but the image could not be decoded
    results["skipped"] = dict(dataset.skipped) | ({UNREADABLE_AT_LOAD: unreadable} if unreadable else {})
    if as_json:
        emit_json(results)
        return
    table = Table(title=f"{data} (split {split}) - {results['model']['samples']} samples, {results['model']['device']}")
    table.add_column("predictor")
    columns = ("mpjpe", "mpjpe_left", "mpjpe_right", "mpvpe", "pa_mpjpe", "rotation_error_deg_median", "joint_2d_err_px_median")
    for column in ("MPJPE mm", "left", "right", "MPVPE mm", "PA-MPJPE mm", "rotation err° (median)", "2D joint err px (median)"):
        table.add_column(column, justify="right")
    for name in ("model", "mean_pose_baseline"):
        if name in results:
            m = results[name]
            table.add_row(name, *(f"{m[k]:.2f}" if k in m else "-" for k in columns))
    stdout.print(table)
    if results["skipped"]:
        stdout.print(describe_skipped(results["skipped"]))
    if "ratio_to_baseline" in results:
        stdout.print(f"MPJPE ratio to the mean-pose baseline: {results['ratio_to_baseline']:.3f}")
