"""`lagchand-edge qat`: quantization-aware fine-tuning for one target's int8 graph."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from lagchand_edge.cli.common import console, module_names, progress_bar, renamed, stdout

LOG_EVERY = 20  # steps between log lines when stderr is not a terminal


def qat(
    target: str = typer.Option(..., help="executorch, tflite or coreml: the artifact it converts to (tflite trains ExecuTorch's graph, so a run "
                                            "for either converts to both)."),
    data: Path = typer.Option(..., help="InterHand2.6M-format root or cache (`data cache`); labels are not needed (distillation)."),
    out: Path = typer.Option(Path("runs/qat/lagchand_qat.safetensors"), help="QAT checkpoint to write (.safetensors + .json sidecar)."),
    checkpoint: Path = typer.Option(None, help="FP32 source checkpoint; default: the bundled reference."),
    split: str = typer.Option("train", help="train, val or test."),
    epochs: int = typer.Option(1, min=1, help="Passes over the data."),
    batch_size: int = typer.Option(8, min=1, help="Samples per step."),
    lr: float = typer.Option(2e-5, min=0.0, help="Adam learning rate (peak of a cosine schedule)."),
    freeze_observers: float = typer.Option(0.5, help="Fraction of the steps after which the weights' int8 scales stop moving."),
    calib_num: int = typer.Option(32, min=1, help="Images of DATA whose PTQ calibration sets the activations' int8 ranges."),
    recalibrations: int = typer.Option(1, min=0, help="Times per epoch (evenly spaced, the last at its end) the activations' int8 "
                                       "ranges are calibrated again on the weights as trained; 0: PTQ's ranges throughout."),
    static: str = typer.Option(None, help="int8 plan: modules quantized W8A8 (default: all, 'model')."),
    float_activations: str = typer.Option(None, help="int8 plan: modules with int8 weights over float activations."),
    keep_float: str = typer.Option(None, help="int8 plan: modules kept float."),
    num: int = typer.Option(None, min=1, help="Use only the first N samples (as --num does everywhere)."),
    limit: int = typer.Option(None, min=1, hidden=True, help="Old name of --num, kept for one release."),
    resume: bool = typer.Option(False, help="Continue from OUT's last finished epoch."),
    seed: int = typer.Option(0, help="Seed for shuffling."),
    mano_dir: Path = typer.Option(None, help="MANO_RIGHT/LEFT.pkl folder, for the real release."),
) -> None:
    """Fine-tune the target's int8 graph under its own fake quantization, distilled from the FP32 model;
    then `convert --qat OUT` builds the artifact."""
    from calibration.plans import Int8Plan
    from calibration.qat import QATOptions, train_qat

    default = Int8Plan()
    plan = Int8Plan(module_names(static, default.static), module_names(float_activations, default.float_activations),
                    module_names(keep_float, default.keep_float))
    options = QATOptions(target=target, data=data, out=out, checkpoint=checkpoint, split=split, epochs=epochs, batch_size=batch_size,
                         lr=lr, freeze_observers=freeze_observers, calib_num=calib_num, recalibrations=recalibrations, plan=plan, seed=seed,
                         limit=renamed(num, limit, "--num", "--limit"),
                         resume=resume, mano_dir=mano_dir)
    started = time.perf_counter()
    with progress_bar(f"QAT ({target})", None) as advance:
        def on_step(epoch: int, step: int, losses: dict) -> None:
            status = f"epoch {epoch + 1}/{epochs} step {step} distillation L1 {losses['loss']:.3f}"
            advance(1, info=status)
            if not console.is_terminal and step % LOG_EVERY == 0:
                console.print(f"{time.perf_counter() - started:8.0f} s  {status}", highlight=False)

        info = train_qat(options, on_step)
    last = info["history"][-1]
    stdout.print(f"wrote {out} ({target}, epoch {info['epoch']}, distillation L1 {last['distillation_l1']:.3f}; int8 plan: {plan.describe()}); "
                 f"next: lagchand-edge convert --qat {out}")
