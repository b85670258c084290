"""The main job on the embedded defaults, as one library call: a synthetic set, every target and
precision converted from the checkpoint, their drift against FP32 and their latency, in one
report folder. `lagchand-edge quickstart` renders what this returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lagchand_edge.drift.check import Stages, no_stages
from lagchand_edge.errors import UserError


@dataclass
class Quickstart:
    data: Path
    artifacts: list  # ConvertResult per target and precision
    drift: dict  # the drift report (FAIL verdicts are information here, not a stop)
    profile: dict  # the profile session
    anchors_timed: bool  # MediaPipe's models were cached and timed alongside
    left_out: list[str]  # targets whose packages are not installed here (their pip extras say how)


def run_quickstart(out: Path, num: int = 32, precisions: tuple[str, ...] = ("fp32", "int8"), checkpoint: Path | None = None,
                   force: bool = False, stages: Stages = no_stages) -> Quickstart:
    """Everything into `out`: data/ (the calibration set), artifacts/, report/ (drift and profile), for
    every target whose packages are installed (the others are named in `left_out`)."""
    from converters import TARGETS, convertible, get_target
    from lagchand_edge.convert import build_artifacts
    from lagchand_edge.data.synth import synthetic_set
    from lagchand_edge.drift.check import DriftRequest, check_drift
    from lagchand_edge.io import report_files
    from lagchand_edge.profile.anchors import anchors_cached
    from lagchand_edge.profile.report import write_profile_report
    from lagchand_edge.profile.session import Settings, count_models, profile_to

    installed = convertible()
    if not installed:
        raise UserError("no target's converter is installed: pip install 'lagchand-edge[all]' (or [executorch], [tflite], [coreml])")
    data = out / "data"
    with stages("synthetic calibration set", num, True) as advance:
        synthetic_set(data, num, "calibration", progress=advance, force=force)
    results = []
    for precision in precisions:
        targets = [name for name in installed if precision in get_target(name).PRECISIONS]
        with stages(f"converting {precision}", len(targets), True) as advance:
            for name in targets:
                results += build_artifacts(name, precision, out / "artifacts", checkpoint, calib_data=data, calib_num=num, force=force,
                                           progress=advance)
    report = out / "report"
    anchor = anchors_cached()
    paths = [out / "artifacts"]
    with stages("profiling", count_models(paths, anchor), True) as advance:
        session = profile_to(report, paths, Settings(threads=2, warmup=5, runs=20), checkpoint, anchor, force=force, progress=advance)
    # after the profile, so that report.html has the accuracy-vs-latency chart; on a fresh test set, not the calibration one
    drift = check_drift(DriftRequest([out / "artifacts"], num=num, checkpoint=checkpoint), report, force, stages)
    with report_files(report, "profile.json", force=True) as tmp:  # profile.html again, now with accuracy beside latency
        write_profile_report(session, tmp, drift_dir=report)
    left_out = [f"{name}: pip install 'lagchand-edge[{get_target(name).EXTRA}]'" for name in TARGETS if name not in installed]
    return Quickstart(data, results, drift, session, anchor, left_out)
