"""The drift check as one library call: the data (given, cached or synthetic), the FP32 reference,
one pass per rank, the report files. `lagchand-edge drift` and `quickstart` parse and render;
this does the work.

Long stages report through `stages(description, total, shown)`, a context manager yielding
`advance(n)` (the CLI passes its progress bars; the default shows nothing).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lagchand_edge.errors import UserError

Stages = Callable[[str, int | None, bool], AbstractContextManager[Callable[..., None]]]


@contextmanager
def no_stages(description: str, total: int | None, shown: bool = True) -> Iterator[Callable[..., None]]:
    yield lambda n=1, **fields: None


@dataclass
class Gates:
    """Thresholds (mm) beyond the per-precision defaults; None keeps a default (or leaves the vertex gate off)."""

    max_mpjpe_drift: float | None = None
    max_mpvpe_drift: float | None = None
    max_vertex_drift: float | None = None

    def check(self) -> None:
        for option, value in vars(self).items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{option.replace('_', '-')} {value}: a gate is a finite number of millimetres, 0 or more")


@dataclass
class DriftRequest:
    """What to check, against what, on which data (the options of `lagchand-edge drift check`)."""

    artifacts: list[Path] = field(default_factory=list)
    data: Path | None = None  # an InterHand2.6M-format root or a `data cache`; None: a synthetic test set
    split: str = "test"
    num: int = 200
    checkpoint: Path | None = None  # the FP32 reference; None: the bundled one
    gates: Gates = field(default_factory=Gates)
    shard: str | None = None
    strict: bool = False
    per_layer: bool = False
    allow_mismatch: bool = False
    batch_size: int = 8
    worst_k: int = 4
    mano_dir: Path | None = None


def check_drift(request: DriftRequest, out: Path, force: bool = False, stages: Stages = no_stages) -> dict | None:
    """Check every artifact against the FP32 reference and write the report into `out`.

    Under torchrun every rank calls this; rank 0 writes and returns the report, the others None.
    """
    from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint
    from lagchand_edge.data.cache import open_dataset
    from lagchand_edge.data.synth import describe_synthetic, synthetic_set
    from lagchand_edge.distributed import process_group
    from lagchand_edge.drift.harness import parse_shard
    from lagchand_edge.io import refuse_existing

    refuse_existing(out / "report.json", force)
    request.gates.check()
    if not request.artifacts and not request.per_layer:
        raise UserError("give artifact folders to check (or --per-layer for the sensitivity ranking alone)")
    shard = parse_shard(request.shard)
    for path in [*request.artifacts, *([request.data] if request.data is not None else [])]:  # before minutes of rendering, not after
        if not path.exists():
            raise UserError(f"{path}: not found")
    checkpoint = request.checkpoint or bundled_checkpoint()
    model = load_checkpoint(checkpoint)
    with process_group() as ranks, tempfile.TemporaryDirectory() as tmp:
        if ranks.world > 1 and request.shard:
            raise UserError("--shard under torchrun: the ranks are the shards; give one or the other")
        root = request.data
        if root is None:  # every rank renders the same set (deterministic): no shared folder needed
            with stages("synthetic test set", request.num, ranks.leader) as advance:
                root = synthetic_set(Path(tmp) / "drift-data", request.num, "test", progress=advance)
        dataset = open_dataset(root, request.split, request.mano_dir, limit=request.num, strict=request.strict)
        run = _run_on_all_ranks(ranks, model, checkpoint, dataset, request, shard, stages)
        if run is None:
            return None  # a rank other than 0: rank 0 writes the report
        sensitivity = _sensitivity(model, dataset, min(request.num, 32), stages) if request.per_layer else None
    if request.data is None:
        run.data["root"] = describe_synthetic(request.num, "test")
    return _write(run, request.gates, sensitivity, out, force)


def merge_drift(folders: list[Path], out: Path, gates: Gates | None = None, force: bool = False) -> dict:
    """Fold the outputs of `--shard` runs into the report one process would have written."""
    from lagchand_edge.drift.harness import load_run, merge_runs
    from lagchand_edge.io import refuse_existing

    refuse_existing(out / "report.json", force)
    gates = gates or Gates()
    gates.check()
    if not folders:
        raise UserError("drift merge: give the shard output folders to merge")
    return _write(merge_runs([load_run(folder) for folder in folders]), gates, None, out, force)


def _write(run, gates: Gates, sensitivity: dict | None, out: Path, force: bool) -> dict:
    from lagchand_edge.drift.report import build_report, write_report
    from lagchand_edge.io import report_files

    report = build_report(run, gates.max_mpjpe_drift, gates.max_mpvpe_drift, sensitivity, gates.max_vertex_drift)
    with report_files(out, "report.json", force=force) as tmp_out:
        run.save(tmp_out)
        write_report(run, report, tmp_out, beside=out)
    return report


def _run_on_all_ranks(ranks, model, checkpoint: Path, dataset, request: DriftRequest, shard: tuple[int, int], stages: Stages):
    """The drift run of this launch: one process's (or shard's), or under torchrun every rank's
    block merged on rank 0 (None on the other ranks)."""
    from lagchand_edge.distributed import reference_device, shard_indices
    from lagchand_edge.drift.harness import merge_runs, run_drift, shard_alignment

    align = shard_alignment(reference_device(), request.batch_size)
    if ranks.world > 1:
        shard = ranks.shard
        ranks.block(len(dataset), align)  # refuses a launch that leaves some rank nothing to do
    total = len(dataset) if ranks.world > 1 else len(shard_indices(len(dataset), shard, align))
    started = time.perf_counter()
    with stages("drift", total, ranks.leader) as advance:
        runs = ranks.gather(lambda tick: run_drift(model, checkpoint, dataset, request.artifacts, shard, request.batch_size,
                                                   request.allow_mismatch, request.worst_k, tick), advance)
    if runs is None:
        return None
    if len(runs) == 1:
        return runs[0]
    run = merge_runs(runs)
    run.machine |= {"ranks": ranks.world, "elapsed_seconds": time.perf_counter() - started}
    return run


def _sensitivity(model, dataset, num: int, stages: Stages) -> dict:
    import numpy as np

    from calibration.select import select_calibration
    from calibration.sensitivity import SENSITIVITY_MODULES, layer_sensitivity
    from lagchand_edge.data.transforms import to_model_input

    samples = [dataset.load(i) for i in range(min(num, len(dataset)))]
    images = to_model_input(np.stack([s["image"] for s in samples]))
    gt = np.stack([s["joints_cam"] for s in samples]).astype(np.float64)
    calibration = select_calibration(dataset.root, min(16, len(dataset)), split=dataset.split).images
    with stages("per-layer sensitivity", 1 + 2 * len(SENSITIVITY_MODULES), True) as advance:
        return layer_sensitivity(model, calibration, images, gt, progress=advance)
