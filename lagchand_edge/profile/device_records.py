"""Latency records made on other devices, folded into a profile (`profile --merge`).

Four forms are read: the device runner's JSON, LiteRT's `benchmark_model` log, ExecuTorch's
`executor_runner` log, and Xcode's Core ML performance report copied into a CSV (Xcode has no
export of that report). A record is tied to an artifact by sha256: its own hash when it carries
one (the device runner's), else the model file it names, by that file's manifest when the file
is here, or by the artifact folder and file name it was pushed as. A folder of records is one
device's, named by the folder. Ratios are only taken between
rows of one device: a tied int8 row against the same device's fp32 artifact of its target.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path, PurePosixPath

from lagchand_edge.artifact import MANIFEST, read_manifest
from lagchand_edge.errors import UserError

_BENCHMARK_MODEL = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), Warmup \(avg\): ([\d.]+), "
                              r"Inference \(avg\): ([\d.]+)")
_EXECUTOR_RUNNER = re.compile(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms")
#: how each tool names the model file it ran (benchmark_model: its parameters and its load line; executor_runner: its load line)
_NAMED_MODEL = re.compile(r"Graph: \[([^\]]+)\]|Loaded model (\S+)|Model file (\S+) is loaded")
#: the CSV a user fills from Xcode's performance report: model path, device, the report's median prediction (and load) time
XCODE_COLUMNS = ("model", "device", "prediction_ms")


def _record(name: str, runtime: str, p50: float, note: str, load: float | None = None, first: float | None = None) -> dict:
    """A record in the device runner's shape, from a tool that gives one summary number."""
    stats = {"runs": None, "mean": p50, "p50": p50, "note": note}
    return {"model": name, "runtime": runtime, "latency_ms": stats, "latencies_ms": [p50], "load_ms": load, "first_inference_ms": first,
            "sha256": None, "size_bytes": None, "peak_rss_increase_mb": None, "stability": {"note": "not measured by the tool"}}


def record_from_log(text: str, name: str) -> dict | None:
    """A latency record from LiteRT's `benchmark_model` or ExecuTorch's `executor_runner` output (means only)."""
    found = _BENCHMARK_MODEL.search(text)
    if found:
        init, first, _, mean = (float(v) / 1000 for v in found.groups())
        record = _record(name, "litert benchmark_model", mean, "the tool reports a mean only; p50 shows that mean", init, first)
    else:
        found = _EXECUTOR_RUNNER.search(text)
        if not found:
            return None
        runs, total = int(found.group(1)), float(found.group(2))
        record = _record(name, "executorch executor_runner", total / max(runs, 1), "the tool reports a mean only; p50 shows that mean")
    named = _NAMED_MODEL.search(text)
    record["model_path"] = next(group for group in named.groups() if group) if named else None
    return record


def records_from_xcode_csv(text: str, source: Path) -> list[dict]:
    """Records from Xcode's Core ML performance report, one CSV row (model, device, prediction_ms,
    optional load_ms and compute_units) per report."""
    reader = csv.DictReader(io.StringIO(text))
    records = []
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            prediction = float(row["prediction_ms"])
            load = float(row["load_ms"]) if row.get("load_ms") else None
        except ValueError:
            raise UserError(f"{source}:{line}: prediction_ms and load_ms must be numbers of milliseconds") from None
        if not row["model"] or not row["device"] or prediction <= 0 or (load is not None and load < 0):
            raise UserError(f"{source}:{line}: every row needs a model path, a device name, a prediction_ms above 0 (and no negative load_ms)")
        units = f", {row['compute_units']}" if row.get("compute_units") else ""
        record = _record(PurePosixPath(row["model"]).name, f"coreml (Xcode performance report{units})", prediction,
                         "Xcode's report gives the median prediction time", load)
        records.append(record | {"model_path": row["model"], "label": row["device"]})
    if not records:
        raise UserError(f"{source}: a header ({', '.join(XCODE_COLUMNS)}) but no rows")
    return records


def read_records(path: Path) -> list[dict]:
    """Every record in one file made on another device (one per file, except a CSV of Xcode reports)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a spreadsheet's CSV may start with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or 'not text'})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = None
    if isinstance(record, dict):  # a device-runner record: what a row reads of it must be there
        if not (isinstance(record.get("model"), str) and isinstance(record.get("runtime"), str)
                and isinstance(record.get("latency_ms"), dict) and isinstance(record["latency_ms"].get("p50"), int | float)):
            raise UserError(f"{path}: a JSON record without the device runner's model, runtime and latency_ms.p50")
        return [record]
    header = {name.strip().lower() for name in text.splitlines()[0].split(",")} if text.strip() else set()
    if set(XCODE_COLUMNS) <= header:
        return records_from_xcode_csv(text, Path(path))
    record = record_from_log(text, Path(path).stem)
    if record is None:
        raise UserError(f"{path}: neither a device-runner record, benchmark_model / executor_runner output nor an Xcode report CSV "
                        f"({', '.join(XCODE_COLUMNS)})")
    return [record]


def merged_rows(path: Path) -> list[dict]:
    """Profile rows for the records of one file, or of every file in a folder named after the device
    (one log per artifact); target and precision are unknown until tied to an artifact."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    if not files:
        raise UserError(f"{path}: an empty folder; give device records or a folder of them")
    rows = []
    for file in files:
        for record in read_records(file):
            label = record.get("label") or record.get("host") or (path.name if path.is_dir() else file.stem)
            rows.append({"artifact": f"{record['model']}@{label}", "path": str(file), "target": record["runtime"], "precision": "see artifact",
                         "status": "OK", "label": label, "sha256": record.get("sha256"), "record": record, "merged": True, "tied_to": None})
    return rows


def _named_artifact(named: str, artifacts: list[tuple[Path, Path, dict]]) -> tuple[Path, dict] | None:
    """The artifact a record's model path names: the folder around that file when it is here, else the
    one profiled artifact pushed under its folder and file name (`adb push .../tflite-int8 /data/local/tmp/`)."""
    local = Path(named)
    if local.exists() and (local.parent / MANIFEST).is_file():
        return local.parent, read_manifest(local.parent)
    pushed = PurePosixPath(named)
    found = [(path, manifest) for path, model, manifest in artifacts
             if manifest.get("sha256") and (path.name, model.name) == (pushed.parent.name, pushed.name)]
    return found[0] if len(found) == 1 else None


def tie_to_artifacts(rows: list[dict], artifacts: list[tuple[Path, Path, dict]]) -> None:
    """Give each merged row the target, precision and sha256 of the artifact it ran, where that is
    certain: by the record's own sha256, else by the model file it names."""
    by_sha = {manifest["sha256"]: (path, manifest) for path, _, manifest in artifacts if manifest.get("sha256")}  # foreign files: none
    for row in rows:
        if row["sha256"]:
            found = by_sha.get(row["sha256"])
            if found is None:
                row["tie_note"] = "no artifact profiled here has its sha256"
        else:
            named = row["record"].get("model_path")
            found = _named_artifact(named, artifacts) if named else None
        if found:
            path, manifest = found
            row.update(artifact=f"{path.name}@{row['label']}", target=manifest["target"], precision=manifest["precision"],
                       sha256=manifest["sha256"], source=manifest.get("source", {}), tied_to=str(path))


def same_device_speedups(rows: list[dict]) -> None:
    """Each tied merged row that is not fp32 against the fastest tied fp32 row of the same device,
    target and checkpoint (`speedup_vs_device_fp32`); none where that device ran no such fp32 artifact."""
    from lagchand_edge.profile.report import fastest_fp32, p50

    tied = [r for r in rows if r.get("merged") and r.get("tied_to")]
    for row in tied:
        base = None if row["precision"] == "fp32" else fastest_fp32([r for r in tied if r["label"] == row["label"]], row)
        if base:
            row["speedup_vs_device_fp32"] = {"baseline": base["artifact"], "ratio": p50(base) / p50(row)}
