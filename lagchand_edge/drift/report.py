"""The drift report: gate verdicts, then report.json, report.md and a self-contained report.html.

Plots are matplotlib (Agg) PNGs written beside the report and embedded in the HTML as base64,
so the HTML can be mailed or attached to a CI run on its own.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import numpy as np

from lagchand_edge.data.records import describe_skipped
from lagchand_edge.drift.harness import DEFAULT_GATES, DriftRun, Entry
from lagchand_edge.hand.joints import INTERHAND_JOINT_NAMES
from lagchand_edge.plots import figure, html_figures, plot_scatter, save_figure

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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


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
    ax.legend()
    save_figure(fig, path)


def plot_per_joint(entry_row: dict, path: Path) -> None:
    plt = figure()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    values = entry_row["drift"]["per_joint_drift_mm"]
    ax.bar(range(len(values)), values, color="#e08a2c")
    ax.set_xticks(range(len(values)), INTERHAND_JOINT_NAMES, rotation=70, fontsize=7)
    ax.set_ylabel("mean joint drift vs FP32 (mm)")
    ax.set_title(f"{entry_row['artifact']}: per-joint drift")
    save_figure(fig, path)


def draw_worst(run: DriftRun, entry: Entry, rank: int, path: Path) -> None:
    """The sample drawn with FP32's mesh (green) and the artifact's (magenta) over the image."""
    from lagchand_edge.viz import draw_hands

    sample = entry.drift.worst_sorted()[rank]
    green, magenta = (60, 200, 90), (220, 40, 200)
    scale = 2
    first = draw_hands(sample.image, sample.reference_2d[0], sample.reference_2d[1], run.faces, scale=scale,
                       colours={"left": green, "right": green})
    both = draw_hands(np.asarray(first), sample.artifact_2d[0] * scale, sample.artifact_2d[1] * scale, run.faces, scale=1,
                      colours={"left": magenta, "right": magenta})
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


def write_report(run: DriftRun, report: dict, out: Path) -> list[Path]:
    """report.json, report.md, report.html and their PNGs into `out` (an atomic folder)."""
    images: list[tuple[str, Path]] = []
    rows = {r["path"]: r for r in report["artifacts"]}
    for i, entry in enumerate(run.entries):
        row = rows[str(entry.path)]
        if row["verdict"] not in ("PASS", "FAIL"):
            continue
        stem = f"{i:02d}-{entry.name}"
        plot_drift_distribution(entry, out / f"{stem}-drift.png")
        plot_per_joint(row, out / f"{stem}-joints.png")
        images += [(f"{entry.name}: drift distribution", out / f"{stem}-drift.png"), (f"{entry.name}: per-joint drift", out / f"{stem}-joints.png")]
        for rank in range(len(entry.drift.worst)):
            picture = out / f"{stem}-worst{rank + 1}.png"
            draw_worst(run, entry, rank, picture)
            sample = entry.drift.worst_sorted()[rank]
            images.append((f"{entry.name}: worst #{rank + 1}, {sample.sample_id} ({sample.drift_mm:.3f} mm; FP32 green, artifact magenta)", picture))
    measured = [r for r in report["artifacts"] if "accuracy" in r]
    if measured:
        plot_scatter(measured, "size_bytes", "size (bytes)", out / "accuracy-vs-size.png")
        images.insert(0, ("accuracy vs size", out / "accuracy-vs-size.png"))
        latency = _profile_latency(out)
        if latency:
            for r in measured:
                r["latency_p50_ms"] = latency.get(r["sha256"])
            plot_scatter(measured, "latency_p50_ms", "p50 latency (ms, host proxy)", out / "accuracy-vs-latency.png", pareto=True)
            images.insert(1, ("accuracy vs latency", out / "accuracy-vs-latency.png"))
    if report.get("sensitivity"):
        plot_sensitivity(report["sensitivity"], out / "sensitivity.png")
        images.insert(0, ("per-layer sensitivity", out / "sensitivity.png"))
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "report.md").write_text(markdown(report, images))
    (out / "report.html").write_text(html_page(report, images))
    return [out / "report.json", out / "report.md", out / "report.html"]


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
    """coreml-sim's time per sample against the fp32 ExecuTorch artifact's, both measured in this run (issue #7's goal)."""
    rows = [r for r in report["artifacts"] if "ms_per_sample" in r]
    base = next((r for r in rows if r["target"] == "executorch" and r["precision"] == "fp32"), None)
    sims = [r for r in rows if r["runtime"] == "coreml-sim"]
    if not base or not sims:
        return None
    return "coreml-sim speed: " + ", ".join(f"{r['artifact']} {r['ms_per_sample']:.0f} ms/sample = {r['ms_per_sample'] / base['ms_per_sample']:.1f}x "
                                            f"executorch-fp32 ({base['ms_per_sample']:.0f} ms)" for r in sims) + " (goal <= 20x)"


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


def html_page(report: dict, images: list[tuple[str, Path]]) -> str:
    table = summary_lines(report)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    cell = '<td class="{}">{}</td>'  # a verdict cell's class is its first word (PASS, FAIL, ...)
    body = "".join("<tr>" + "".join(cell.format(html.escape(c.split(" ")[0]), html.escape(c)) for c in row) + "</tr>" for row in table[1:])
    figures = html_figures(images)
    overview = "".join(f"<li>{html.escape(line)}</li>" for line in _overview(report))
    raw = io.StringIO()
    json.dump({k: v for k, v in report.items() if k != "sample_ids"}, raw, indent=1, default=float)
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;font-size:13px}.PASS{background:#d9f2dd}.FAIL{background:#f7d4d4}.ERROR{background:#f2e2c4}"
             ".SKIPPED{background:#eee}figure{display:inline-block;margin:8px}img{max-width:560px}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>LAGCHand drift report</title><style>{style}</style></head>"
            f"<body><h1>LAGCHand drift report</h1><ul>{overview}</ul><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"{figures}<details><summary>all numbers (report.json)</summary><pre>{html.escape(raw.getvalue())}</pre></details></body></html>\n")
