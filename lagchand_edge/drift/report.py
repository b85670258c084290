"""The drift report: gate verdicts, then report.json, report.md and a self-contained report.html.

Plots are matplotlib (Agg) PNGs written beside the report and embedded in the HTML as base64,
so the HTML can be mailed or attached to a CI run on its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from converters import INTERPRETERS, SPEED_BASELINE
from lagchand_edge.data.records import describe_skipped
from lagchand_edge.drift.harness import DEFAULT_GATES, DriftRun, Entry
from lagchand_edge.hand.joints import INTERHAND_JOINT_NAMES, MIDDLE_MCP
from lagchand_edge.html import render
from lagchand_edge.plots import figure, plot_scatter, save_figure

PROFILE_FILE = "profile.json"


def gate_for(precision: str, mpjpe: float | None, mpvpe: float | None, vertex_drift: float | None = None) -> dict:
    """The limits one artifact is held to: |ΔMPJPE| and |ΔMPVPE| (defaults by precision), and,
    only when asked for, the p95 per-sample vertex drift from FP32's outputs."""
    default = DEFAULT_GATES.get(precision, 1.0)
    return {"max_mpjpe_drift_mm": default if mpjpe is None else mpjpe, "max_mpvpe_drift_mm": default if mpvpe is None else mpvpe,
            "max_p95_vertex_drift_mm": vertex_drift}


def artifact_row(entry: Entry, reference: dict, max_mpjpe: float | None, max_mpvpe: float | None, max_vertex_drift: float | None = None) -> dict:
    """Every number of one artifact, and its verdict: PASS, FAIL (naming the gates it failed),
    ERROR or SKIPPED.

    ΔMPJPE / ΔMPVPE compare accuracy against ground truth, so an artifact whose outputs moved far
    from FP32's can still pass them (a collapsed prediction may score near a weak model's
    error); the optional vertex-drift gate catches that."""
    manifest = entry.manifest
    row = {"artifact": entry.name, "path": str(entry.path), "target": manifest.get("target", "?"),
           "runtime": entry.runtime or manifest.get("target", "?"),
           "precision": manifest.get("precision", "?"), "size_bytes": manifest.get("size_bytes"), "sha256": manifest.get("sha256"),
           "int8_plan": manifest.get("recipe", {}).get("int8_plan"), "status": entry.status, "reason": entry.reason}
    if entry.status != "RUN":
        row["verdict"] = entry.status
        return row
    accuracy = entry.accuracy.summary()
    drift = entry.drift.summary()
    gate = gate_for(row["precision"], max_mpjpe, max_mpvpe, max_vertex_drift)
    delta_j = accuracy["mpjpe"] - reference["mpjpe"]
    delta_v = accuracy["mpvpe"] - reference["mpvpe"] if "mpvpe" in accuracy else None
    checks = [("ΔMPJPE", abs(delta_j), gate["max_mpjpe_drift_mm"]),
              ("ΔMPVPE", None if delta_v is None else abs(delta_v), gate["max_mpvpe_drift_mm"]),
              ("p95 vertex drift", drift["vertex_drift_mm"]["p95"], gate["max_p95_vertex_drift_mm"])]
    failed = [name for name, value, limit in checks if value is not None and limit is not None and value > limit]
    samples = len(entry.drift.vertex_drift)
    row |= {"accuracy": accuracy, "drift": drift, "delta_mpjpe_mm": delta_j, "delta_mpvpe_mm": delta_v, "gate": gate,
            "verdict": "FAIL" if failed else "PASS", "failed_gates": failed, "inference_seconds": entry.seconds,
            "ms_per_sample": 1000 * entry.seconds / max(samples, 1)}
    return row


def build_report(run: DriftRun, max_mpjpe: float | None = None, max_mpvpe: float | None = None, sensitivity: dict | None = None,
                 max_vertex_drift: float | None = None) -> dict:
    reference = run.reference_accuracy.summary()
    rows = [artifact_row(e, reference, max_mpjpe, max_mpvpe, max_vertex_drift) for e in run.entries]
    names = [r["artifact"] for r in rows]
    for row, entry in zip(rows, run.entries, strict=True):
        if names.count(row["artifact"]) > 1:  # same folder name from different places: say which
            row["artifact"] = f"{entry.path.parent.name}/{entry.path.name}"
    inference = run.reference_seconds + sum(e.seconds for e in run.entries)
    return {
        "schema_version": 1,
        "reference": run.reference | {"accuracy": reference, "inference_seconds": run.reference_seconds},
        "data": run.data | {"samples": len(run.sample_ids)},
        "shard": list(run.shard),
        "artifacts": rows,
        "passed": all(r["verdict"] in ("PASS", "SKIPPED") for r in rows),
        "timing": {"wall_seconds": run.wall_seconds, "inference_seconds": inference, "reading_seconds": run.reading_seconds,
                   "overhead_ratio": run.wall_seconds / inference if inference else None,
                   "reading_share": run.reading_seconds / run.wall_seconds if run.wall_seconds else None,
                   "samples_per_second": stage_rates(run)},
        "machine": run.machine,
        "sensitivity": sensitivity,
        "sample_ids": run.sample_ids,
    }


def stage_rates(run: DriftRun) -> dict[str, float | None]:
    """Samples per second of each stage alone: reading, the FP32 reference, each artifact that ran
    (per process: under torchrun the seconds are summed over the ranks)."""
    samples = len(run.sample_ids)
    stages = {"reading": run.reading_seconds, "reference": run.reference_seconds}
    stages |= {entry.name: entry.seconds for entry in run.entries if entry.status == "RUN"}
    return {name: samples / seconds if seconds else None for name, seconds in stages.items()}


def throughput_line(report: dict) -> str:
    timing = report["timing"]
    rates = ", ".join(f"{name} {_fmt(rate, 1)}" for name, rate in timing["samples_per_second"].items())
    return f"Throughput (samples/s per process): {rates}; reading is {100 * (timing['reading_share'] or 0):.0f}% of the wall time"


def _fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    """A number at `digits` decimals ('-' for none); one that rounds to zero prints 0, never -0."""
    if value is None:
        return "-"
    return f"{round(value, digits) + 0.0:{'+' if signed else ''}.{digits}f}"


def summary_lines(report: dict) -> list[list[str]]:
    """The summary table as rows of text (header first), shared by the CLI, Markdown and HTML."""
    header = ["artifact", "target", "precision", "size MB", "ΔMPJPE mm", "ΔMPVPE mm", "p95 vertex drift mm", "min SNR dB", "verdict"]
    lines = [header]
    for r in report["artifacts"]:
        size = "-" if r.get("size_bytes") is None else f"{r['size_bytes'] / 1e6:.2f}"
        if r["verdict"] in ("ERROR", "SKIPPED"):
            lines.append([r["artifact"], r["target"], r["precision"], size, "-", "-", "-", "-", r["verdict"]])
            continue
        finite = [v for v in r["drift"]["snr_db"].values() if v is not None]
        snr = min(finite) if finite else None
        lines.append([r["artifact"], r["runtime"], r["precision"], size, _fmt(r["delta_mpjpe_mm"], 4), _fmt(r["delta_mpvpe_mm"], 4),
                      _fmt(r["drift"]["vertex_drift_mm"]["p95"], 4), "identical" if snr is None else _fmt(snr, 1), _verdict(r)])
    return lines


def _verdict(row: dict) -> str:
    failed = row.get("failed_gates")
    return f"{row['verdict']} ({', '.join(failed)})" if failed else row["verdict"]


def plot_drift_distribution(entry: Entry, path: Path) -> None:
    plt = figure()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = np.asarray(entry.drift.vertex_drift)
    ax.hist(values, bins=min(40, max(5, len(values) // 4)), color="#4a7fc1")
    ax.axvline(np.percentile(values, 95), color="#c14a4a", linestyle="--", label="p95")
    ax.set_xlabel("per-sample mean vertex distance to FP32 (mm)")
    ax.set_ylabel("samples")
    ax.set_title(f"{entry.name}: drift distribution")
    ax.xaxis.set_major_locator(plt.MaxNLocator(6))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.legend()
    save_figure(fig, path)


def plot_per_joint(entry_row: dict, path: Path) -> None:
    plt = figure()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    values = entry_row["drift"]["per_joint_drift_mm"]
    joints = [j for j in range(len(values)) if j != MIDDLE_MCP]  # outputs are relative to it: its drift is 0 by construction
    ax.bar(range(len(joints)), [values[j] for j in joints], color="#e08a2c")
    ax.set_xticks(range(len(joints)), [INTERHAND_JOINT_NAMES[j] for j in joints], rotation=70, fontsize=7)
    ax.set_ylabel("mean joint drift vs FP32 (mm)")
    ax.set_title(f"{entry_row['artifact']}: per-joint drift (the root, middle MCP, left out: always 0)", fontsize=9)
    save_figure(fig, path)


#: Below this p95 vertex drift (mm; about a pixel in the crop) worst-sample pictures would show nothing.
VISIBLE_DRIFT_MM = 0.5
TRUTH, FP32, ARTIFACT = (250, 210, 40), (60, 200, 90), (220, 40, 200)


def draw_worst(run: DriftRun, entry: Entry, rank: int, path: Path) -> None:
    """The sample with the ground-truth skeleton (yellow), FP32's mesh (green) and the artifact's
    (magenta), and a legend: a model error (green far from yellow) and a drift (magenta far
    from green) look different."""
    from PIL import ImageDraw

    from lagchand_edge.viz import draw_hands

    sample = entry.drift.worst_sorted()[rank]
    scale = 2
    picture = np.asarray(sample.image)
    if sample.truth_2d is not None:
        valid = np.isfinite(sample.truth_2d).all(-1)
        picture = np.asarray(draw_hands(picture, np.nan_to_num(sample.truth_2d), scale=1, colours={"left": TRUTH, "right": TRUTH},
                                        joint_valid=valid))
    first = draw_hands(picture, sample.reference_2d[0], sample.reference_2d[1], run.faces, scale=scale, colours={"left": FP32, "right": FP32})
    both = draw_hands(np.asarray(first), sample.artifact_2d[0] * scale, sample.artifact_2d[1] * scale, run.faces, scale=1,
                      colours={"left": ARTIFACT, "right": ARTIFACT})
    draw = ImageDraw.Draw(both)
    x = 6
    for label, colour in (("ground truth", TRUTH), ("FP32", FP32), (entry.name, ARTIFACT)):
        draw.rectangle([x, 6, x + 12, 18], fill=colour, outline=(255, 255, 255))
        draw.text((x + 16, 6), label, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
        x += 24 + int(draw.textlength(label))
    both.save(path)


# ---------------------------------------------------------------------------------------- files


def _profile_latency(out: Path) -> dict[str, float]:
    """p50 latency (ms) per artifact sha256 from a profile.json in the same folder, if any."""
    path = out / PROFILE_FILE
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text()).get("results", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return {r["sha256"]: r["record"]["latency_ms"]["p50"] for r in records if r.get("sha256") and r.get("status") == "OK"}


def write_report(run: DriftRun, report: dict, out: Path, beside: Path | None = None) -> list[Path]:
    """report.json, report.md, report.html and their PNGs into `out` (an atomic folder); `beside`
    is the folder they land in (default `out`): a profile.json there adds accuracy vs latency."""
    rows = {r["path"]: r for r in report["artifacts"]}
    sections = [_artifact_section(run, entry, rows[str(entry.path)], i, out) for i, entry in enumerate(run.entries)]
    overall = []
    measured = [r for r in report["artifacts"] if "accuracy" in r]
    reference_mpjpe = report["reference"]["accuracy"]["mpjpe"]
    if measured:
        plot_scatter(measured, "size_bytes", "size (MB)", out / "accuracy-vs-size.png", reference_mpjpe=reference_mpjpe,
                     gate_mm=DEFAULT_GATES["int8"], scale=1e-6)
        overall.append(("accuracy vs size: FP32's MPJPE as a line, the int8 gate as a band", out / "accuracy-vs-size.png"))
        latency = _profile_latency(beside or out)
        if latency:
            for r in measured:
                r["latency_p50_ms"] = latency.get(r["sha256"])
            plot_scatter(measured, "latency_p50_ms", "p50 latency (ms, host proxy)", out / "accuracy-vs-latency.png", pareto=True,
                         reference_mpjpe=reference_mpjpe, gate_mm=DEFAULT_GATES["int8"])
            overall.append(("accuracy vs latency (profile.json in this folder); dashed: the Pareto front", out / "accuracy-vs-latency.png"))
    sensitivity = None
    if report.get("sensitivity"):
        sensitivity = out / "sensitivity.png"
        plot_sensitivity(report["sensitivity"], sensitivity)
    images = overall + ([("per-layer sensitivity", sensitivity)] if sensitivity else []) + [f for s in sections for f in s["figures"]]
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "report.md").write_text(markdown(report, images))
    raw = json.dumps({k: v for k, v in report.items() if k != "sample_ids"}, indent=1, default=float)
    gates = ", ".join(f"{mm:g} mm at {precision}" for precision, mm in DEFAULT_GATES.items())
    overrides = any(r["gate"] != gate_for(r["precision"], None, None, r["gate"]["max_p95_vertex_drift_mm"]) for r in measured)
    vertex_gate = next((r["gate"]["max_p95_vertex_drift_mm"] for r in measured if r["gate"]["max_p95_vertex_drift_mm"] is not None), None)
    page = render("drift.html.j2", title="LAGCHand drift report", passed=report["passed"], overview=_overview(report),
                  table=summary_lines(report), anchors={s["name"]: s["anchor"] for s in sections}, artifacts=sections, overall=overall,
                  sensitivity=sensitivity, raw=raw, gates=gates + (" (overridden here)" if overrides else " by default"), vertex_gate=vertex_gate)
    (out / "report.html").write_text(page)
    return [out / "report.json", out / "report.md", out / "report.html"]


def _artifact_section(run: DriftRun, entry: Entry, row: dict, index: int, out: Path) -> dict:
    """One artifact's part of the page: its numbers, its charts, its worst samples when drift is visible."""
    section = {"name": row["artifact"], "anchor": f"a{index}-{re.sub(r'[^a-zA-Z0-9-]+', '-', row['artifact'])}", "verdict": row["verdict"],
               "verdict_text": _verdict(row), "reason": row.get("reason") or "", "facts": [], "figures": [], "worst_note": ""}
    if row["verdict"] not in ("PASS", "FAIL"):
        return section
    accuracy, drift, gate = row["accuracy"], row["drift"], row["gate"]
    snr = ", ".join(f"{name} {_fmt(value, 1) if value is not None else 'identical'}" for name, value in drift["snr_db"].items())
    vertex = drift["vertex_drift_mm"]
    mpvpe = (f", MPVPE {accuracy['mpvpe']:.3f} mm (ΔMPVPE {_fmt(row['delta_mpvpe_mm'], 4, signed=True)}, gate ±{gate['max_mpvpe_drift_mm']:g})"
             if "mpvpe" in accuracy else "")
    section["facts"] = [
        f"`{row['path']}`: {row['target']} {row['precision']}, run by {row['runtime']}, {row['size_bytes'] / 1e6:.2f} MB, "
        f"{row['ms_per_sample']:.1f} ms per sample here",
        f"Accuracy vs ground truth: MPJPE {accuracy['mpjpe']:.3f} mm (ΔMPJPE {_fmt(row['delta_mpjpe_mm'], 4, signed=True)}, "
        f"gate ±{gate['max_mpjpe_drift_mm']:g})" + mpvpe,
        f"Drift from FP32's outputs (per-sample mean vertex distance): mean {vertex['mean']:.4g}, p50 {vertex['p50']:.4g}, "
        f"p95 {vertex['p95']:.4g}, max {vertex['max']:.4g} mm" + (f" (gate on p95: {gate['max_p95_vertex_drift_mm']:g} mm)"
                                                                   if gate["max_p95_vertex_drift_mm"] is not None else ""),
        f"Output SNR vs FP32 (dB): {snr}",
    ]
    if row.get("int8_plan"):
        plan = row["int8_plan"]
        section["facts"].append(f"int8 plan: W8A8 {plan['static_w8a8']}, float activations {plan['float_activations'] or '-'}, "
                                f"float {plan['keep_float'] or '-'}")
    stem = f"{index:02d}-{entry.name}"
    plot_drift_distribution(entry, out / f"{stem}-drift.png")
    plot_per_joint(row, out / f"{stem}-joints.png")
    section["figures"] = [(f"{entry.name}: drift distribution", out / f"{stem}-drift.png"),
                          (f"{entry.name}: per-joint drift", out / f"{stem}-joints.png")]
    if vertex["p95"] < VISIBLE_DRIFT_MM:
        section["worst_note"] = (f"No worst-sample pictures: the p95 drift ({vertex['p95']:.3g} mm) is below {VISIBLE_DRIFT_MM} mm, "
                                 "about a pixel in the crop, so the meshes would be drawn on top of each other.")
        return section
    for rank, sample in enumerate(entry.drift.worst_sorted()):
        picture = out / f"{stem}-worst{rank + 1}.png"
        draw_worst(run, entry, rank, picture)
        section["figures"].append((f"worst #{rank + 1}: {sample.sample_id}, {sample.drift_mm:.3f} mm from FP32 "
                                   "(yellow: ground truth, green: FP32, magenta: this artifact)", picture))
    return section


def plot_sensitivity(sensitivity: dict, path: Path) -> None:
    plt = figure()
    ranking = sensitivity["ranking"]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ranking) + 1.2))
    names = [r["module"] for r in ranking][::-1]
    ax.barh(names, [r["only_this_int8_mm"] for r in ranking][::-1], color="#c14a4a", label="only this module int8")
    ax.barh(names, [r["all_but_this_int8_mm"] for r in ranking][::-1], color="#4a7fc1", alpha=0.6, label="all int8 except this")
    ax.set_xlabel("mean joint drift vs FP32 (mm)")
    ax.legend(fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    save_figure(fig, path)


def _overview(report: dict) -> list[str]:
    ref = report["reference"]["accuracy"]
    timing = report["timing"]
    lines = [f"Reference: `{report['reference']['checkpoint']}` ({report['reference']['config']}) on {report['machine']['reference_device']}: "
             f"MPJPE {ref['mpjpe']:.2f} mm" + (f", MPVPE {ref['mpvpe']:.2f} mm" if "mpvpe" in ref else ""),
             f"Data: `{report['data']['root']}` [{report['data']['split']}], {report['data']['samples']} samples"
             + (f" ({describe_skipped(report['data']['skipped'])})" if report["data"].get("skipped") else ""),
             f"Harness: {timing['wall_seconds']:.1f} s wall for {timing['inference_seconds']:.1f} s of inference "
             f"(overhead ratio {_fmt(timing['overhead_ratio'], 2)})" + _ranks(report["machine"]),
             throughput_line(report),
             f"Verdict: {'PASS' if report['passed'] else 'FAIL'}"]
    sim = interpreter_speed(report)
    if sim:
        lines.append(sim)
    lines += [f"{r['artifact']}: {r['verdict']}: {r['reason']}" for r in report["artifacts"] if r["verdict"] in ("ERROR", "SKIPPED")]
    return lines


def _ranks(machine: dict) -> str:
    ranks = machine.get("ranks", 1)
    return f"; {ranks} torchrun ranks, {machine['elapsed_seconds']:.1f} s elapsed" if ranks > 1 else ""


def interpreter_speed(report: dict) -> str | None:
    """A reference interpreter's time per sample against SPEED_BASELINE's artifact, both measured in this run (issue #7's goal)."""
    rows = [r for r in report["artifacts"] if "ms_per_sample" in r]
    base = next((r for r in rows if (r["target"], r["precision"]) == SPEED_BASELINE), None)
    sims = [r for r in rows if r["runtime"] in INTERPRETERS]
    if not base or not sims:
        return None
    return "coreml-sim speed: " + ", ".join(f"{r['artifact']} {r['ms_per_sample']:.0f} ms/sample = {r['ms_per_sample'] / base['ms_per_sample']:.1f}x "
                                            f"{base['artifact']} ({base['ms_per_sample']:.0f} ms)" for r in sims) + " (goal <= 20x)"


def markdown(report: dict, images: list[tuple[str, Path]]) -> str:
    lines = ["# LAGCHand drift report", ""] + [f"- {line}" for line in _overview(report)] + [""]
    table = summary_lines(report)
    lines += ["| " + " | ".join(table[0]) + " |", "|" + " --- |" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if report.get("sensitivity"):
        lines += ["", "## Per-layer sensitivity (|ΔMPJPE| mm)", "", "| module | only this int8 | all but this int8 |", "| --- | --- | --- |"]
        lines += [f"| {r['module']} | {r['only_this_int8_mm']:.3f} | {r['all_but_this_int8_mm']:.3f} |" for r in report["sensitivity"]["ranking"]]
    lines += [""] + [f"![{title}]({path.name})" for title, path in images]
    return "\n".join(lines) + "\n"
