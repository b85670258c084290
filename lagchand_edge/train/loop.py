"""The training loop: Adam, a step or warm-up + cosine schedule, IntagHand's losses, safetensors checkpoints.

Runs as one process or under `torchrun` (DDP; gloo on CPU, nccl on GPUs). Resumable from the
last finished epoch; deterministic for a seed on one process. A run from scratch starts the
decoder at its data's mean hands (`LAGCHand.set_template`); `budget_minutes` trains for a fixed
time instead (the schedule follows the clock), the learning-speed benchmark.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from lagchand_edge.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from lagchand_edge.data.cache import open_dataset
from lagchand_edge.data.interhand import collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.distributed import local_device
from lagchand_edge.errors import UserError
from lagchand_edge.io import check_writable, write_safetensors
from lagchand_edge.model import create_model
from lagchand_edge.train.augment import augment
from lagchand_edge.train.losses import DEFAULT_WEIGHTS, total_loss
from lagchand_edge.train.targets import gaussian_heatmaps, lr_at, normalise_hands, weak_perspective
from lagchand_edge.train.validation import Validator


@dataclass
class TrainOptions:
    data: Path
    out: Path
    config: str = "reference"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    schedule: str = "step"  # "step": the paper's lr / 10 at half-way; "cosine": linear warm-up, then cosine to 0
    warmup: float = 0.03  # fraction of the steps that warm up (cosine)
    seed: int = 0
    limit: int | None = None
    resume: bool = False
    force: bool = False  # replace an existing OUT (without it, and without resume, OUT is refused)
    init: Path | None = None  # start from these weights (fine-tuning), with a fresh optimizer
    bf16: bool = False  # mixed precision: the forward pass under bf16 autocast, weights and losses fp32
    edge_from: float = 0.5  # fraction of training after which the edge loss joins (IntagHand)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    augment: bool = True
    clip_grad: float | None = None  # clip the gradient's global norm (a spike then cannot throw the weights off)
    budget_minutes: float | None = None
    val_data: Path | None = None  # validate after every epoch (MPJPE ratio to the training data's mean hands)
    val_num: int = 300
    mano_dir: Path | None = None
    workers: int = 0  # DataLoader processes reading and collating batches (0: this process; a GPU wants several)


def prepare_batch(batch: dict, image_size: int, heatmap_size: int, rng: np.random.Generator | None) -> tuple[torch.Tensor, dict]:
    """Images as (B, 3, H, W) floats in [0, 1] (augmented with `rng`) and training targets."""
    images = to_model_input(batch["image"])
    if rng is not None:
        images, batch = augment(images, batch, rng)
    joints, vertices = normalise_hands(batch["joints_cam"].double(), batch["vertices_cam"].double())
    targets = {
        "joints": joints.float(),
        "vertices": vertices.float(),
        "joints_2d": batch["joints_2d"] / image_size,
        "vertices_2d": batch["vertices_2d"] / image_size,
        "heatmaps": gaussian_heatmaps(batch["joints_2d"], heatmap_size, image_size),
    }
    return images, targets


def predictions(outputs: tuple, image_size: int) -> dict[str, torch.Tensor]:
    vertices, joints, camera, heatmaps = outputs
    return {"vertices": vertices, "joints": joints, "heatmaps": heatmaps, "camera": camera,
            "vertices_2d": weak_perspective(vertices, camera, image_size), "joints_2d": weak_perspective(joints, camera, image_size)}


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def optimizer_path(out: Path) -> Path:
    return out.with_name(out.stem + ".optimizer.safetensors")


def save_optimizer(optimizer: torch.optim.Optimizer, out: Path) -> None:
    state = optimizer.state_dict()["state"]
    tensors = {f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous() for i, s in state.items() for k, v in s.items()}
    write_safetensors(optimizer_path(out), tensors)


def load_optimizer(optimizer: torch.optim.Optimizer, out: Path) -> None:
    tensors = load_file(str(optimizer_path(out)))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)


def _model(opts: TrainOptions, dataset, validator: Validator | None):
    """The model to train and the epoch to start at: resumed, initialised from a checkpoint, or new
    (then starting from the training data's mean hands)."""
    if opts.resume and opts.out.is_file():
        info = json.loads(sidecar_path(opts.out).read_text())
        return load_checkpoint(opts.out, opts.config, dataset.hands), int(info.get("epoch", 0)), info
    if opts.init is not None:
        return load_checkpoint(opts.init, opts.config, dataset.hands), 0, {}
    model = create_model(opts.config, dataset.hands)
    model.set_template(validator.mean_vertices if validator else Validator.mean_hands(dataset)[1])
    return model, 0, {}


def train(opts: TrainOptions, on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train and return the sidecar info of the last checkpoint written."""
    if opts.schedule not in ("step", "cosine"):
        raise UserError(f"unknown schedule {opts.schedule!r}; choose 'step' or 'cosine'")
    if Path(opts.out).exists() and not (opts.resume or opts.force):
        raise UserError(f"{opts.out} already exists (use --force to replace it, or --resume to continue it)")
    check_writable(opts.out)  # before the first epoch, not after it
    rank, world = _distributed()
    device = local_device()
    torch.manual_seed(opts.seed)
    dataset = open_dataset(opts.data, "train", opts.mano_dir, opts.limit)
    if not dataset.has_mesh:
        raise UserError(f"{opts.data}: training needs mesh annotations (_MANO_NeuralAnnot.json and the hand model)")
    if len(dataset) < opts.batch_size * world:
        raise UserError(f"{opts.data}: {len(dataset)} samples are fewer than one batch ({opts.batch_size} x {world} processes)")
    validator = Validator(opts.val_data, dataset, opts.val_num, opts.mano_dir) if opts.val_data is not None and rank == 0 else None
    model, start_epoch, info = _model(opts, dataset, validator)
    model.to(device).train()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # oneDNN's fast path for the convolutions (1.5x with bf16)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    if start_epoch and optimizer_path(opts.out).is_file():
        load_optimizer(optimizer, opts.out)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if world > 1 else model
    sampler = torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True, seed=opts.seed) if world > 1 else None
    faces = torch.as_tensor(dataset.hands["right"].faces, device=device)
    cfg = model.cfg
    history = info.get("history", [])
    steps_per_epoch = len(dataset) // (opts.batch_size * world)
    total_steps = steps_per_epoch * opts.epochs
    spent = sum(h["seconds"] for h in history)
    budget = None if opts.budget_minutes is None else opts.budget_minutes * 60
    for epoch in range(start_epoch, opts.epochs):
        generator = torch.Generator().manual_seed(opts.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, opts.batch_size, shuffle=sampler is None, sampler=sampler,
                                             collate_fn=collate, generator=generator, drop_last=True, num_workers=opts.workers,
                                             pin_memory=device.type == "cuda")
        rng = np.random.default_rng([opts.seed, epoch, rank]) if opts.augment else None
        sums: dict[str, float] = {}
        steps, stop, progress = 0, False, epoch / opts.epochs
        started = time.perf_counter()
        for batch in loader:
            if batch is None:
                continue
            progress = (epoch * steps_per_epoch + steps) / total_steps
            if budget is not None:
                progress = max(progress, (spent + time.perf_counter() - started) / budget)
                if progress >= 1.0:
                    stop = True
                    break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(progress, opts.lr, opts.schedule, opts.warmup)
            weights = dict(opts.weights)
            if progress < opts.edge_from:
                weights["edge"] = 0.0
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            images, targets = prepare_batch(batch, cfg.image_size, cfg.heatmap_size, rng)  # augmented where the model runs
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
                outputs = net(images)
            outputs = tuple(o.float() for o in outputs)
            losses = total_loss(predictions(outputs, cfg.image_size), targets, faces, weights)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            if opts.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
            optimizer.step()
            steps += 1
            for name, value in {"loss": losses.total, **losses.terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            if on_step and rank == 0:
                on_step(epoch, steps, {k: v / steps for k, v in sums.items()})
        seconds = time.perf_counter() - started
        spent += seconds
        record = {"epoch": epoch + 1, "steps": steps, "seconds": round(seconds, 1), "lr": lr_at(progress, opts.lr, opts.schedule, opts.warmup),
                  **{k: round(v / max(steps, 1), 6) for k, v in sums.items()}}
        if validator is not None:
            record |= validator(model)
            model.train()
        history.append(record)
        if rank == 0:
            info = {"epoch": epoch + 1, "history": history, "data": str(opts.data), "samples": len(dataset),
                    "skipped": dict(dataset.skipped), "options": {k: str(v) for k, v in asdict(opts).items()},
                    "command": " ".join(sys.argv), "world_size": world, "budget_stop": stop}
            save_checkpoint(model, opts.out, info)
            save_optimizer(optimizer, opts.out)
        if stop:
            break
    if world > 1:
        dist.barrier()
    return info
