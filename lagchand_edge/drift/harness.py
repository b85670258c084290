"""The drift harness: every artifact against the FP32 reference, on the same samples, in one pass.

Images are decoded once per batch (or read from a `data cache`); the FP32 reference runs on the
same images (on CUDA when present, batched there), then each runnable artifact. A run covers the
whole data set or one shard (`index/count`, a contiguous block whose boundaries fall on batch
boundaries); its state is saved so shards, by hand or from torchrun's ranks, merge exactly.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lagchand_edge.artifact import find_artifacts, load_runner, read_manifest, tool_versions
from lagchand_edge.data.interhand import InterHandDataset, collate
from lagchand_edge.data.records import UNREADABLE_AT_LOAD
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.distributed import reference_device, shard_indices
from lagchand_edge.drift.tally import AccuracyTally, Aligned, DriftTally, WorstSample
from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import HAND_NAMES
from lagchand_edge.io import file_sha256
from lagchand_edge.model import DeployModel, HandPrediction, LAGCHand

#: Default gate on |ΔMPJPE| and |ΔMPVPE| (mm) per precision (issue #5).
DEFAULT_GATES = {"fp32": 0.01, "fp16": 0.1, "w8": 1.0, "int8": 1.0}
STATE_FILE = "drift-state.json"
WORST_FILE = "drift-worst.npz"


@dataclass
class Entry:
    """One artifact row: its manifest, status (RUN, ERROR, SKIPPED) and tallies."""

    path: Path
    manifest: dict = field(default_factory=dict)
    status: str = "RUN"
    reason: str = ""
    runner: object = None
    accuracy: AccuracyTally = field(default_factory=AccuracyTally)
    drift: DriftTally = field(default_factory=DriftTally)
    seconds: float = 0.0
    runtime: str = ""  # what actually ran it, e.g. coreml-sim for CoreML on Linux

    @property
    def name(self) -> str:
        return self.path.name

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason, self.runner = status, reason, None


def open_entries(paths: list[Path], reference_sha256: str, allow_mismatch: bool, worst_k: int) -> list[Entry]:
    """Manifest checks and runners; artifacts that cannot run here become ERROR/SKIPPED rows."""
    entries = []
    for path in find_artifacts(paths):
        entry = Entry(path, drift=DriftTally(worst_k))
        entries.append(entry)
        if path.is_file():
            entry.fail("ERROR", "a bare model file has no manifest; drift needs a lagchand-edge artifact folder")
            continue
        try:
            entry.manifest = read_manifest(path)
        except UserError as exc:
            entry.fail("ERROR", str(exc))
            continue
        source = entry.manifest.get("source", {}).get("checkpoint_sha256")
        if source != reference_sha256 and not allow_mismatch:
            raise UserError(f"{path}: converted from another checkpoint (sha256 {str(source)[:12]}..., reference "
                            f"{reference_sha256[:12]}...); pass the right --checkpoint or --allow-mismatch")
        try:
            entry.runner = load_runner(path)
            entry.runtime = getattr(entry.runner.backend, "RUNTIME", entry.manifest.get("target", ""))
        except UserError as exc:
            message = str(exc)
            entry.fail("SKIPPED" if "cannot run" in message else "ERROR", message.split(": ", 1)[-1])
        except Exception as exc:  # a corrupt model file with a matching sha256: this row fails, the others still run
            entry.fail("ERROR", f"cannot load: {_one_line(exc)}")
    return entries


def _one_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: need 0 <= INDEX < COUNT")
    return index, count


@dataclass
class DriftRun:
    """Everything one pass measured; `state()` / `load_run()` persist it for merging."""

    reference: dict
    data: dict
    shard: tuple[int, int]
    entries: list[Entry]
    reference_accuracy: AccuracyTally
    sample_ids: list[str]
    reference_seconds: float
    wall_seconds: float
    machine: dict
    faces: dict[str, np.ndarray] | None = None  # for drawing the worst samples' meshes
    reading_seconds: float = 0.0  # decoding and cropping (or reading a cache), batching included

    def state(self) -> dict:
        return {
            "reference": self.reference, "data": self.data, "shard": list(self.shard), "sample_ids": self.sample_ids,
            "reference_accuracy": self.reference_accuracy.state(), "reference_seconds": self.reference_seconds,
            "reading_seconds": self.reading_seconds, "wall_seconds": self.wall_seconds, "machine": self.machine,
            "artifacts": [{"path": str(e.path), "manifest": e.manifest, "status": e.status, "reason": e.reason, "runtime": e.runtime,
                           "seconds": e.seconds, "accuracy": e.accuracy.state(), "drift": e.drift.state()} for e in self.entries],
        }

    def save(self, out: Path) -> None:
        (out / STATE_FILE).write_text(json.dumps(self.state()))
        arrays = {}
        for a, entry in enumerate(self.entries):
            for w, sample in enumerate(entry.drift.worst):
                prefix = f"a{a}_w{w}_"
                arrays |= {prefix + "image": sample.image, prefix + "ref_j": sample.reference_2d[0], prefix + "ref_v": sample.reference_2d[1],
                           prefix + "art_j": sample.artifact_2d[0], prefix + "art_v": sample.artifact_2d[1],
                           prefix + "meta": np.array([sample.drift_mm, sample.index]), prefix + "id": np.array(sample.sample_id)}
                if sample.truth_2d is not None:
                    arrays[prefix + "gt_j"] = sample.truth_2d
        if self.faces is not None:
            arrays |= {f"faces_{side}": faces for side, faces in self.faces.items()}
        np.savez_compressed(out / WORST_FILE, **arrays)


def load_run(folder: Path) -> DriftRun:
    """A run saved by `DriftRun.save` (a shard's output folder)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        arrays = np.load(folder / WORST_FILE)
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        raise UserError(f"{folder}: not a drift output folder ({STATE_FILE} / {WORST_FILE} unreadable: {exc})") from None
    entries = []
    for a, item in enumerate(state["artifacts"]):
        worst = []
        w = 0
        while f"a{a}_w{w}_image" in arrays:
            p = f"a{a}_w{w}_"
            drift_mm, index = arrays[p + "meta"]
            worst.append(WorstSample(float(drift_mm), int(index), str(arrays[p + "id"]), arrays[p + "image"],
                                     (arrays[p + "ref_j"], arrays[p + "ref_v"]), (arrays[p + "art_j"], arrays[p + "art_v"]),
                                     arrays[p + "gt_j"] if p + "gt_j" in arrays else None))
            w += 1
        entries.append(Entry(Path(item["path"]), item["manifest"], item["status"], item["reason"], None,
                             AccuracyTally.from_state(item["accuracy"]), DriftTally.from_state(item["drift"], worst), item["seconds"],
                             item.get("runtime", "")))
    return DriftRun(state["reference"], state["data"], tuple(state["shard"]), entries, AccuracyTally.from_state(state["reference_accuracy"]),
                    state["sample_ids"], state["reference_seconds"], state["wall_seconds"], state["machine"],
                    {side: arrays[f"faces_{side}"] for side in HAND_NAMES} if "faces_right" in arrays else None,
                    state.get("reading_seconds", 0.0))


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "platform": platform.platform(), "reference_device": str(device),
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None, "torch_threads": torch.get_num_threads(),
            "tools": tool_versions()}


def run_drift(model: LAGCHand, checkpoint: Path, dataset: InterHandDataset, artifacts: list[Path], shard: tuple[int, int] = (0, 1),
              batch_size: int = 8, allow_mismatch: bool = False, worst_k: int = 4,
              progress: Callable[[int], None] | None = None, device: torch.device | None = None) -> DriftRun:
    """One pass over (a shard of) the data: reference once per batch, then every artifact."""
    reference_sha = file_sha256(checkpoint)
    entries = open_entries(artifacts, reference_sha, allow_mismatch, worst_k)
    device = device or reference_device()
    indices = shard_indices(len(dataset), shard, align=shard_alignment(device, batch_size))
    if len(indices) == 0:
        raise UserError("the data set (or this shard of it) is empty")
    deploy = DeployModel(model.to(device), deployed_form=False).eval()  # FP32 reference: the deployed outputs, no training heatmaps
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size, shuffle=False, collate_fn=collate)
    reference_accuracy, sample_ids = AccuracyTally(), []
    reference_seconds, reading_seconds, dropped = 0.0, 0.0, 0
    started = time.perf_counter()
    for batch, seconds in _timed(loader):
        reading_seconds += seconds
        if batch is None:
            continue
        images_u8 = batch["image"].numpy()
        images = to_model_input(images_u8)
        gt_joints = batch["joints_cam"].numpy().astype(np.float64)
        gt_vertices = batch["vertices_cam"].numpy().astype(np.float64) if dataset.has_mesh else None
        valid = batch["joint_valid"].numpy()
        truth_2d = np.where(valid[..., None], batch["joints_2d"].numpy(), np.nan)  # drawn in the worst samples' pictures
        tick = time.perf_counter()
        reference = reference_outputs(deploy, images, device)
        reference_seconds += time.perf_counter() - tick
        ref = Aligned.of(reference, gt_joints)
        reference_accuracy.update(ref, gt_joints, gt_vertices, valid)
        start_index = indices.start + len(sample_ids)
        for entry in entries:
            if entry.status != "RUN":
                continue
            tick = time.perf_counter()
            try:
                prediction = entry.runner(images.numpy())
            except Exception as exc:  # a runtime failing mid-run: report it, keep checking the others
                entry.fail("ERROR", f"failed while running: {_one_line(exc)}")
                continue
            if not all(np.isfinite(o).all() for o in (prediction.vertices, prediction.joints, prediction.camera)):
                entry.fail("ERROR", f"non-finite outputs (NaN or inf) on sample {batch['sample_id'][0]}'s batch")
                continue
            entry.seconds += time.perf_counter() - tick
            pred = Aligned.of(prediction, gt_joints)
            entry.accuracy.update(pred, gt_joints, gt_vertices, valid)
            entry.drift.update(pred, ref, start_index, batch["sample_id"], images_u8, truth_2d)
        sample_ids += batch["sample_id"]
        dropped += batch["dropped"]
        if progress:
            progress(len(images_u8) + batch["dropped"])
    wall = time.perf_counter() - started
    for entry in entries:
        entry.runner = None  # the runtimes are done; a run is plain data (it travels between torchrun's ranks)
    if not sample_ids:
        raise UserError("no sample of the data set could be read")
    skipped = dict(dataset.skipped) | ({UNREADABLE_AT_LOAD: dropped} if dropped else {})  # the index's skips, then this shard's
    data = {"root": str(dataset.root), "split": dataset.split, "total": len(dataset), "has_mesh": dataset.has_mesh, "skipped": skipped}
    reference = {"checkpoint": str(checkpoint), "sha256": reference_sha, "config": model.cfg.name}
    faces = {side: dataset.hands[side].faces for side in HAND_NAMES} if dataset.has_mesh else None
    return DriftRun(reference, data, shard, entries, reference_accuracy, sample_ids, reference_seconds, wall, machine_info(device), faces,
                    reading_seconds)


def _timed(iterable):
    """Each item with the seconds spent producing it (the data loader's share of the run)."""
    iterator = iter(iterable)
    while True:
        tick = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item, time.perf_counter() - tick


def shard_alignment(device: torch.device, batch_size: int) -> int:
    """Shard boundaries must fall on batch boundaries only where the reference runs batched (a GPU):
    then every shard's batches are the one-process run's, and so are the outputs."""
    return batch_size if device.type == "cuda" else 1


def reference_outputs(deploy: DeployModel, images: torch.Tensor, device: torch.device) -> HandPrediction:
    """The FP32 reference on a batch. On a GPU the batch runs at once (eval-mode outputs depend on
    batching only through float32 rounding: up to 2e-4 mm in a CPU test); on the CPU one image at
    a time, as the artifacts run, so that tallies are exactly equal whatever the batch size."""
    with torch.no_grad():
        if device.type == "cuda":
            return HandPrediction.from_outputs(deploy(images.to(device)))
        outputs = [deploy(images[i : i + 1].to(device)) for i in range(len(images))]
        return HandPrediction.from_outputs([torch.cat(parts) for parts in zip(*outputs, strict=True)])


def merge_runs(runs: list[DriftRun]) -> DriftRun:
    """Shards of one run folded into the run one process would have made (exact sums)."""
    if not runs:
        raise UserError("nothing to merge")
    runs = sorted(runs, key=lambda r: r.shard[0])
    first = runs[0]
    count = first.shard[1]
    if sorted(r.shard[0] for r in runs) != list(range(count)) or any(r.shard[1] != count for r in runs):
        raise UserError(f"shards do not cover 0..{count - 1} exactly once: got {', '.join(f'{a}/{b}' for a, b in (r.shard for r in runs))}")
    for run in runs[1:]:
        if run.reference["sha256"] != first.reference["sha256"] or run.data["root"] != first.data["root"] or run.data["total"] != first.data["total"]:
            raise UserError("shards come from different references or data sets; merge only shards of one drift run")
        if [e.manifest.get("sha256") for e in run.entries] != [e.manifest.get("sha256") for e in first.entries]:
            raise UserError("shards checked different artifacts; merge only shards of one drift run")
    merged = DriftRun(first.reference, dict(first.data), (0, 1), [], AccuracyTally(), [], 0.0, 0.0, first.machine, first.faces)
    # Records skipped while indexing are the whole data set's, counted alike by every shard; images that failed to load are each shard's own.
    merged.data["skipped"] = {reason: n for reason, n in first.data.get("skipped", {}).items() if reason != UNREADABLE_AT_LOAD}
    unreadable = sum(run.data.get("skipped", {}).get(UNREADABLE_AT_LOAD, 0) for run in runs)
    if unreadable:
        merged.data["skipped"][UNREADABLE_AT_LOAD] = unreadable
    for a, template in enumerate(first.entries):
        entry = Entry(template.path, template.manifest, "RUN", "", None, AccuracyTally(), DriftTally(template.drift.worst_k),
                      runtime=template.runtime)
        for run in runs:
            part = run.entries[a]
            if part.status != "RUN" and entry.status == "RUN":
                entry.status, entry.reason = part.status, part.reason
            entry.accuracy.merge(part.accuracy)
            entry.drift.merge(part.drift)
            entry.seconds += part.seconds
        merged.entries.append(entry)
    for run in runs:
        merged.reference_accuracy.merge(run.reference_accuracy)
        merged.sample_ids += run.sample_ids
        merged.reference_seconds += run.reference_seconds
        merged.reading_seconds += run.reading_seconds
        merged.wall_seconds += run.wall_seconds
    return merged
