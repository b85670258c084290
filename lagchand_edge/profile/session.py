"""One profiling session: every artifact, the FP32 eager model and the anchors, each timed in a
fresh process with the same threads and input shape, so load time and peak memory are its own.

Everything runs through the standalone device runner (`apps/device_runner/device_runner.py`),
the program users copy to their devices, started by its path like any other program (the
library does not import the app); its records from devices merge in unchanged (`device_records`).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from converters import TARGETS, get_target, missing_extra, target_for_file
from lagchand_edge.artifact import MANIFEST, find_artifacts, read_manifest
from lagchand_edge.errors import UserError
from lagchand_edge.profile.device_records import merged_rows, same_device_speedups, tie_to_artifacts

HOST_LABEL = "host proxy"
DEVICE_RUNNER = Path(__file__).resolve().parents[2] / "apps" / "device_runner" / "device_runner.py"


@dataclass
class Settings:
    threads: int
    warmup: int
    runs: int
    ops: bool = True

    def flags(self) -> list[str]:
        return ["--threads", str(self.threads), "--warmup", str(self.warmup), "--runs", str(self.runs)]

    def device_runner(self, model: Path) -> list[str]:
        """The device-runner command that profiles `model` (its op breakdown too, unless ops is off)."""
        return [sys.executable, str(DEVICE_RUNNER), str(model), *self.flags()] + ([] if self.ops else ["--no-ops"])


def _run_json(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        message = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else f"exit {done.returncode}")
        raise RuntimeError(message.removeprefix("error: "))
    return json.loads(done.stdout)


def model_file(path: Path) -> tuple[Path, dict]:
    """The model file of an artifact folder (with its manifest) or a foreign model file."""
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise UserError(f"{path}: not an artifact folder (no {MANIFEST})")
        manifest = read_manifest(path)
        return path / manifest["file"], manifest
    if target_for_file(path) is None:
        raise UserError(f"{path}: not a model this toolkit profiles (expected an artifact folder, .pte or .tflite)")
    return path, {"target": target_for_file(path), "precision": "unknown", "foreign": True}


def profile_artifact(path: Path, model: Path, manifest: dict, settings: Settings) -> dict:
    """A row for one artifact: its record, or SKIPPED / ERROR with the reason."""
    row = {"artifact": path.name, "path": str(path), "target": manifest.get("target"),
           "precision": manifest.get("precision"), "foreign": bool(manifest.get("foreign")), "sha256": manifest.get("sha256"),
           "source": manifest.get("source", {}), "label": HOST_LABEL}
    target = get_target(manifest["target"]) if manifest.get("target") in TARGETS else None
    skip = target and (target.LATENCY_UNAVAILABLE or missing_extra(target, target.RUN_PACKAGES))
    if skip:
        return row | {"status": "SKIPPED", "reason": skip}
    try:
        record = _run_json(settings.device_runner(model))
    except RuntimeError as exc:
        return row | {"status": "ERROR", "reason": str(exc)}
    row["sha256"] = row["sha256"] or record["sha256"]
    return row | {"status": "OK", "record": record}


def profile_eager(checkpoint: Path | None, settings: Settings) -> dict:
    from lagchand_edge.checkpoint import bundled_checkpoint, read_metadata

    checkpoint = Path(checkpoint) if checkpoint else bundled_checkpoint()
    config = read_metadata(checkpoint)["config"]
    record = _run_json(settings.device_runner(checkpoint))
    return {"artifact": "pytorch-eager-fp32", "path": str(checkpoint), "target": "pytorch", "precision": "fp32", "status": "OK",
            "label": HOST_LABEL, "sha256": record["sha256"], "source": {"config": config}, "record": record}


def profile_anchor(name: str, path: Path, settings: Settings) -> dict:
    record = _run_json(settings.device_runner(path))  # its op breakdown shows where a plain CNN spends its time
    return {"artifact": f"mediapipe:{name}", "path": str(path), "target": target_for_file(path), "precision": "float (MediaPipe)", "status": "OK",
            "label": HOST_LABEL, "sha256": record["sha256"], "record": record, "anchor": True,
            "note": "one hand, 21 keypoints per inference (LAGCHand: two hands, full meshes)"}


@functools.cache
def deployed_macs(config: str) -> int:
    """MACs of what an artifact of `config` runs (the training-only heatmap stage left out)."""
    from lagchand_edge.model import create_model
    from lagchand_edge.model.flops import deployed_macs as count

    return count(create_model(config))


def run_session(paths: list[Path], settings: Settings, checkpoint: Path | None = None, anchors: dict[str, Path] | None = None,
                merge: list[Path] | None = None, progress: Callable[[int], None] | None = None, reverse: bool = False) -> dict:
    """Profile everything; speed-ups are against the eager FP32 model timed in the same session (records
    merged from other devices: against the same device's fp32 artifact, if any). `reverse` times the artifacts and anchors in the opposite order."""
    if settings.threads < 1:
        raise UserError("--threads must be >= 1")
    if settings.runs < 1:
        raise UserError("--runs must be >= 1")
    artifacts = [(path, *model_file(path)) for path in find_artifacts(paths)]  # every bad path is reported before any timing
    merged = [row for p in merge or [] for row in merged_rows(p)]
    tie_to_artifacts(merged, artifacts)
    jobs = [(profile_artifact, (path, model, manifest, settings)) for path, model, manifest in artifacts]
    jobs += [(profile_anchor, (name, path, settings)) for name, path in (anchors or {}).items()]
    eager = profile_eager(checkpoint, settings)
    if progress:
        progress(1)
    timed: dict[int, dict] = {}
    for index in reversed(range(len(jobs))) if reverse else range(len(jobs)):
        function, args = jobs[index]
        timed[index] = function(*args)
        if progress:
            progress(1)
    rows = [eager, *(timed[index] for index in range(len(jobs))), *merged]
    eager_p50 = eager["record"]["latency_ms"]["p50"]
    for row in rows:  # a merged record ran on another device: this host's eager time is no baseline for it
        if row["status"] == "OK" and not row.get("merged"):
            row["speedup_vs_eager"] = eager_p50 / row["record"]["latency_ms"]["p50"]
        config = (row.get("source") or {}).get("config")
        if config:
            row["source_macs"] = deployed_macs(config)
        row["macs"] = row.get("source_macs") or (row.get("record") or {}).get("graph_macs")  # a foreign model's from its graph
    same_device_speedups(merged)
    return {"schema_version": 1, "label": HOST_LABEL, "settings": vars(settings), "machine": {"cpu": eager["record"]["cpu"],
            "platform": eager["record"]["platform"]}, "eager_p50_ms": eager_p50, "results": rows}


def _lean(session: dict) -> dict:
    """One run's rows as `goals` reads them, without the per-inference series and op breakdowns."""
    rows = []
    for row in session["results"]:
        lean = {k: v for k, v in row.items() if k != "record"}
        if row["status"] == "OK":
            lean["record"] = {k: row["record"][k] for k in ("latency_ms", "stability") if k in row["record"]}
        rows.append(lean)
    return {"results": rows}


def profile_to(out: Path, paths: list[Path], settings: Settings, checkpoint: Path | None = None, anchor: bool = False,
               merge: list[Path] | None = None, force: bool = False, progress: Callable[[int], None] | None = None,
               repeat: int = 1) -> dict:
    """Profile everything and write profile.json / .md / .html into `out` (beside a drift report
    there, an accuracy-vs-latency chart joins them). `progress` counts models: `count_models`.
    `repeat` > 1 times everything again, in the opposite order every other time and without op
    breakdowns; the report's rows are the first run's, its goals carry each ratio's median over all."""
    from lagchand_edge.io import refuse_existing, report_files
    from lagchand_edge.profile.anchors import cached_anchors
    from lagchand_edge.profile.report import write_profile_report

    if settings.threads < 1 or settings.runs < 1 or settings.warmup < 0 or repeat < 1:
        raise UserError("--threads, --runs and --repeat must be >= 1 and --warmup >= 0")
    if not paths and not merge and not anchor:
        raise UserError("give artifacts or model files to profile (or --merge records, or --anchor)")
    refuse_existing(out / "profile.json", force)
    anchors = cached_anchors() if anchor else None
    with report_files(out, "profile.json", force=force) as tmp:
        session = run_session(paths, settings, checkpoint, anchors, merge, progress)
        if repeat > 1:  # the later runs need no op breakdown: the report's rows are the first run's
            again = replace(settings, ops=False)
            session["repeats"] = [_lean(session)] + [_lean(run_session(paths, again, checkpoint, anchors, merge, progress, reverse=run % 2 == 1))
                                                     for run in range(1, repeat)]
        write_profile_report(session, tmp, drift_dir=out)
    return session


def count_models(paths: list[Path], anchor: bool, repeat: int = 1) -> int:
    """How many models `profile_to` times: the eager model, every artifact, the cached anchors, `repeat` times."""
    from lagchand_edge.profile.anchors import cached_anchors

    return repeat * (1 + len(find_artifacts(paths)) + (len(cached_anchors()) if anchor else 0))
