"""The profile report: profile.json, profile.md, profile.html, latency plots, the issue's goal
ratios, and (when a drift report sits in the same folder) one accuracy-vs-latency chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from lagchand_edge.html import render
from lagchand_edge.plots import figure, plot_scatter, save_figure

DRIFT_REPORT = "report.json"


def p50(row: dict) -> float:
    return row["record"]["latency_ms"]["p50"]


def goals(session: dict) -> dict:
    """The ratios issues #6 and #19 ask for, from this session's own measurements (merged device rows
    take no part: a ratio compares two rows of one machine)."""
    ok = [r for r in session["results"] if r["status"] == "OK" and not r.get("merged")]
    int8 = _fastest(r for r in ok if r.get("precision") == "int8")
    out: dict = {"int8_speedup_vs_eager": {t: r["speedup_vs_eager"] for t, r in int8.items()}, "speedup_goal": 4.0}
    vs_fp32 = {}
    for target, fast in int8.items():
        fp32 = fastest_fp32(ok, fast)
        if fp32:
            vs_fp32[target] = {"int8": fast["artifact"], "fp32": fp32["artifact"], "ratio": p50(fp32) / p50(fast)}
    out |= {"int8_speedup_vs_fp32": vs_fp32, "speedup_vs_fp32_goal": 2.0}
    anchor = next((r for r in ok if r["artifact"] == "mediapipe:hand_landmark_full"), None)
    if int8 and anchor:
        best = min(int8.values(), key=p50)
        # MediaPipe runs its landmark model once per hand: two runs are what LAGCHand's one inference replaces
        for key, runs in (("best_int8_vs_mediapipe_full", 1), ("int8_vs_mediapipe_two_hands", 2)):
            out[key] = {"artifact": best["artifact"], "ratio": p50(best) / (runs * p50(anchor)), "goal": 1.0}
            if best.get("macs") and anchor.get("macs"):  # how much of the latency ratio is just more arithmetic
                out[key]["macs_ratio"] = best["macs"] / (runs * anchor["macs"])
    out["stability"] = {r["artifact"]: r["record"]["stability"]["note"] for r in ok}
    if len(session.get("repeats", [])) > 1:
        out["repeated"] = _repeated([_ratios(goals(run)) for run in session["repeats"]])
    return out


def _ratios(summary: dict) -> dict[str, float]:
    """One run's goal ratios under flat names (what `--repeat` summarises)."""
    flat = {f"int8_speedup_vs_eager.{t}": ratio for t, ratio in summary["int8_speedup_vs_eager"].items()}
    flat |= {f"int8_speedup_vs_fp32.{t}": pair["ratio"] for t, pair in summary["int8_speedup_vs_fp32"].items()}
    return flat | {key: summary[key]["ratio"] for key in ("best_int8_vs_mediapipe_full", "int8_vs_mediapipe_two_hands") if key in summary}


def _repeated(runs: list[dict[str, float]]) -> dict:
    """Each ratio's median and range over the runs that measured it (one machine swings past the goals' margins)."""
    out = {}
    for name in dict.fromkeys(name for run in runs for name in run):
        values = [run[name] for run in runs if name in run]
        out[name] = {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}
    return out


def _fastest(rows) -> dict[str, dict]:
    """The fastest row of each target."""
    fastest: dict[str, dict] = {}
    for r in rows:
        if r["target"] not in fastest or p50(r) < p50(fastest[r["target"]]):
            fastest[r["target"]] = r
    return fastest


def _same_source(a: dict, b: dict) -> bool:
    """Converted from the same checkpoint, where both manifests say which (foreign files do not)."""
    one, other = (r.get("source", {}).get("checkpoint_sha256") for r in (a, b))
    return one is None or other is None or one == other


def fastest_fp32(rows, like: dict) -> dict | None:
    """The fastest fp32 row among `rows` of `like`'s target, converted from the same checkpoint:
    the same-runtime baseline an int8 row's speed-up is taken against."""
    return min((r for r in rows if r.get("precision") == "fp32" and r["target"] == like["target"] and _same_source(r, like)),
               key=p50, default=None)


def gmacs_per_second(row: dict) -> float | None:
    """Arithmetic throughput: MACs per inference over the p50 (how much of the time is arithmetic)."""
    return row["macs"] / 1e9 / (p50(row) / 1e3) if row.get("macs") and row["status"] == "OK" else None


def _num(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _speedup(row: dict) -> str:
    """A host row's speed-up over the eager model timed here; a device row's over that device's fp32 artifact."""
    if "speedup_vs_eager" in row:
        return f"{row['speedup_vs_eager']:.2f}x"
    device = row.get("speedup_vs_device_fp32")
    return f"{device['ratio']:.2f}x vs fp32" if device else "-"


def table_rows(session: dict) -> list[list[str]]:
    header = ["artifact", "runtime", "precision", "where", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "trimmed mean ms",
              "speed-up", "peak RSS +MB", "size MB", "GMACs", "GMAC/s", "status"]
    rows = [header]
    for r in session["results"]:
        if r["status"] != "OK":
            rows.append([r["artifact"], str(r.get("target")), str(r.get("precision")), r["label"]] + ["-"] * 11 + [f"{r['status']}: {r['reason']}"])
            continue
        rec, lat = r["record"], r["record"]["latency_ms"]
        size = None if rec.get("size_bytes") is None else rec["size_bytes"] / 1e6
        rows.append([r["artifact"], rec["runtime"], str(r.get("precision")), r["label"], _num(rec.get("load_ms"), ".0f"),
                     _num(rec.get("first_inference_ms"), ".1f"), *(_num(lat.get(k), ".2f") for k in ("p50", "p90", "p99", "trimmed_mean")),
                     _speedup(r), _num(rec.get("peak_rss_increase_mb"), ".0f"), _num(size, ".2f"),
                     _num(r["macs"] / 1e9 if r.get("macs") else None, ".3f"), _num(gmacs_per_second(r), ".0f"),
                     f"OK: {r['tie_note']}" if r.get("tie_note") else "OK"])
    return rows


def _plot_latency(session: dict, path: Path) -> None:
    plt = figure()
    ok = [r for r in session["results"] if r["status"] == "OK"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ok) + 1.5))
    ax.boxplot([r["record"]["latencies_ms"] for r in ok], vert=False, tick_labels=[r["artifact"] for r in ok], showfliers=True)
    ax.set_xlabel(f"latency per inference (ms), {session['settings']['threads']} threads ({session['label']})")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("latency distribution per artifact")
    save_figure(fig, path)


def _accuracy_rows(session: dict, drift: dict) -> list[dict]:
    """Drift-report rows that were profiled here, with their p50 latency attached."""
    latency = {r["sha256"]: r["record"]["latency_ms"]["p50"] for r in session["results"]
               if r["status"] == "OK" and r.get("sha256") and not r.get("merged")}  # this host's time: a device row may run the same file
    rows = [dict(r, latency_p50_ms=latency[r["sha256"]]) for r in drift.get("artifacts", []) if "accuracy" in r and r.get("sha256") in latency]
    return rows


def op_details(row: dict) -> dict | None:
    """Where one model's time goes: a summary line, its op counts, its slowest op types and modules."""
    ops = row["record"].get("op_breakdown")
    if not ops:
        return None
    if "execute_ms" in ops:
        outside = f" ({ops['outside_ops_ms']:.1f} ms of it outside every op: per-call overhead)" if "outside_ops_ms" in ops else ""
        summary = (f"{ops['execute_ms']:.1f} ms in Method::execute{outside}; portable-kernel fallbacks {ops['portable_ms']:.2f} ms "
                   f"({', '.join(f'{k} x{v}' for k, v in ops['portable_ops'].items()) or 'none'})")
    else:
        fallback = ", ".join(f"{k} x{v}" for k, v in ops["fallback_ops"].items()) or "none"
        timed = ""  # records from device runners older than the op timer have counts only
        if "isolated_ops_ms" in ops:
            untimed = f", {ops['untimed_ops']} ops could not run alone" if ops["untimed_ops"] else ""
            timed = f"{ops['isolated_ops_ms']:.1f} ms in ops timed alone (whole model p50 {row['record']['latency_ms']['p50']:.1f} ms{untimed}); "
        summary = (f"{timed}{ops['delegated_ops']}/{ops['ops']} ops in {ops['delegate_partitions']} XNNPACK partitions "
                   f"({100 * ops['delegated_fraction']:.1f}%); outside the delegate: {fallback}")
    counts = ops.get("op_counts") or {}  # the op diet: how many ops of each type the runtime executes
    modules = [(label, _modules_at(ops, depth)[:6]) for depth, label in ((1, "by module"), (3, "slowest blocks"))]
    return {"artifact": row["artifact"], "summary": summary, "total_ops": sum(counts.values()), "op_counts": list(counts.items())[:10],
            "top_ops": ops.get("top_ops", [])[:8], "modules": [(label, found) for label, found in modules if found]}


def op_summary(row: dict) -> list[str]:
    """Where the time goes, in a few lines (the terminal's and the Markdown report's form of `op_details`)."""
    details = op_details(row)
    if details is None:
        return []
    lines = [f"{row['artifact']}: {details['summary']}"]
    if details["op_counts"]:
        lines.append(f"  {details['total_ops']} ops: " + ", ".join(f"{name} {n}" for name, n in details["op_counts"]))
    lines += [f"  {o['op']} [{o['kind']}] x{o['calls']}: {o['ms']:.2f} ms" for o in details["top_ops"]]
    lines += [f"  {label}: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in found) for label, found in details["modules"]]
    return lines


def goal_rows(goals: dict) -> list[list[str]]:
    """The goals as a table: what, measured, goal, met. After `--repeat`, measured also gives the
    median and range over the runs, and met is judged on the median."""
    rows = [["goal", "measured", "target", "met"]]
    repeated = goals.get("repeated", {})

    def add(what: str, name: str, ratio: float, goal: float, at_least: bool, note: str = "") -> None:
        def met(value: float) -> bool:
            return value >= goal if at_least else value <= goal

        summary = repeated.get(name)
        measured = f"{ratio:.2f}x{note}"
        if summary:
            ratio = summary["median"]
            measured += (f"; median of {len(summary['runs'])} runs {ratio:.2f}x ({summary['min']:.2f}-{summary['max']:.2f}, "
                         f"met in {sum(map(met, summary['runs']))})")
        rows.append([what, measured, f"{'>=' if at_least else '<='} {goal:g}x", "yes" if met(ratio) else "no"])

    for target, ratio in goals["int8_speedup_vs_eager"].items():
        add(f"int8 {target} speed-up vs eager FP32", f"int8_speedup_vs_eager.{target}", ratio, goals["speedup_goal"], True)
    for target, pair in goals["int8_speedup_vs_fp32"].items():
        add(f"int8 {target} speed-up vs {target} fp32 ({pair['int8']} / {pair['fp32']})", f"int8_speedup_vs_fp32.{target}", pair["ratio"],
            goals["speedup_vs_fp32_goal"], True)
    for key, what in (("best_int8_vs_mediapipe_full", "MediaPipe hand_landmark_full p50"),
                      ("int8_vs_mediapipe_two_hands", "2 x MediaPipe hand_landmark_full p50 (one run per hand)")):
        best = goals.get(key)
        if best:
            macs = f" (it does {best['macs_ratio']:.2f}x the MACs)" if "macs_ratio" in best else ""
            add(f"best int8 ({best['artifact']}) / {what}", key, best["ratio"], best["goal"], False, macs)
    return rows


def _modules_at(ops: dict, separators: int) -> list[tuple[str, float]]:
    """Module scopes with this many '.'/'/' separators (1: model.encoder), slowest first."""
    return [(name, ms) for name, ms in (ops.get("module_ms") or {}).items() if name and sum(c in "./" for c in name) == separators]


def _plot_op_breakdown(rows: list[dict], path: Path) -> None:
    """Per artifact, its slowest op types as bars: delegated ones blue, fallbacks (portable or builtin kernels) red."""
    plt = figure()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.4 * len(rows)), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        top = row["record"]["op_breakdown"]["top_ops"][:8][::-1]
        ax.barh([f"{o['op']} x{o['calls']}" for o in top], [o["ms"] for o in top],
                color=["#3a6ea5" if o["kind"].startswith("delegated") else "#c0392b" for o in top])
        ax.set_title(row["artifact"], fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("ms per inference (blue: in XNNPACK, red: outside it)", fontsize=8)
    save_figure(fig, path)


def write_profile_report(session: dict, out: Path, drift_dir: Path | None = None) -> None:
    """Files into `out`; a drift report.json in `drift_dir` (default `out`) adds accuracy vs latency."""
    images = []
    if any(r["status"] == "OK" for r in session["results"]):
        _plot_latency(session, out / "latency.png")
        images.append(("latency distribution per model", out / "latency.png"))
    broken_down = [r for r in session["results"] if r["status"] == "OK" and (r["record"].get("op_breakdown") or {}).get("top_ops")]
    if broken_down:
        _plot_op_breakdown(broken_down, out / "ops.png")
        images.append(("where the time goes: slowest op types (blue: inside XNNPACK, red: outside it)", out / "ops.png"))
    drift_path = (drift_dir or out) / DRIFT_REPORT
    if drift_path.is_file():
        drift = json.loads(drift_path.read_text())
        rows = _accuracy_rows(session, drift)
        if rows:
            from lagchand_edge.drift.harness import DEFAULT_GATES

            plot_scatter(rows, "latency_p50_ms", f"p50 latency (ms, {session['label']})", out / "accuracy-vs-latency.png", pareto=True,
                         reference_mpjpe=drift["reference"]["accuracy"]["mpjpe"], gate_mm=DEFAULT_GATES["int8"])
            images.append(("accuracy vs latency (report.json in this folder); dashed: the Pareto front", out / "accuracy-vs-latency.png"))
    session["goals"] = goals(session)
    (out / "profile.json").write_text(json.dumps(session, indent=1))
    table = table_rows(session)
    ops = [line for r in session["results"] if r["status"] == "OK" for line in op_summary(r)]
    heading = f"LAGCHand latency: {session['machine']['cpu']}, {session['settings']['threads']} threads ({session['label']})"
    md = [f"# {heading}", "", "| " + " | ".join(table[0]) + " |", "|" + " --- |" * len(table[0])] + ["| " + " | ".join(r) + " |" for r in table[1:]]
    goal_table = goal_rows(session["goals"])
    md += ["", "## Goals", "", "| " + " | ".join(goal_table[0]) + " |", "|" + " --- |" * len(goal_table[0])]
    md += ["| " + " | ".join(r) + " |" for r in goal_table[1:]] + ["", "## Where the time goes", "", "```", *ops, "```", ""]
    md += [f"![{t}]({p.name})" for t, p in images]
    (out / "profile.md").write_text("\n".join(md) + "\n")
    details = [d for d in (op_details(r) for r in session["results"] if r["status"] == "OK") if d]
    (out / "profile.html").write_text(render("profile.html.j2", title="LAGCHand latency", heading=heading, platform=session["machine"]["platform"],
                                             table=table, goals=goal_table, stability=session["goals"]["stability"], details=details,
                                             figures=images))
