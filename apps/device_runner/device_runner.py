#!/usr/bin/env python3
"""Standalone latency runner for .tflite and .pte models: copy this one file to a device.

Needs numpy plus one runtime: `ai-edge-litert` for .tflite, `executorch` for .pte. It imports
neither torch (for .tflite) nor lagchand-edge, so it runs on an ARM64 Linux board, a Jetson or
Termux on an Android phone. It prints one JSON latency record, which
`lagchand-edge profile --merge RECORD.json` folds into a profile report:

    python3 device_runner.py model.tflite --threads 4 --runs 100 > record.json

On a host with lagchand-edge installed it also times a LAGCHand checkpoint (.safetensors) as
the FP32 eager PyTorch model, the same way: `lagchand-edge profile` runs this program for every
row, so the baseline and the artifacts share one timing method.

Timing: warm-up runs, then two back-to-back series of timed runs; when their p50s differ by
more than 10% the counts are doubled and the measurement repeated (up to twice), and the
record says so. Random inputs of the model's declared shapes and dtypes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

RECORD_SCHEMA = 1
STABILITY_TOLERANCE = 0.10
MAX_RETRIES = 2


def latency_stats(ms: list[float]) -> dict:
    """min, p50, p90, p99, mean, std, trimmed mean (middle 80%) and throughput of latencies in ms."""
    values = np.sort(np.asarray(ms, dtype=np.float64))
    n = len(values)
    cut = int(n * 0.1)
    middle = values[cut : n - cut] if n - 2 * cut > 0 else values
    mean = float(values.mean())
    return {"runs": n, "min": float(values[0]), "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "mean": mean, "std": float(values.std()), "trimmed_mean": float(middle.mean()),
            "max": float(values[-1]), "throughput_per_s": 1000.0 / mean if mean > 0 else None}


def time_calls(call, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def stable_latencies(call, warmup: int, runs: int) -> tuple[list[float], dict]:
    """Two back-to-back series; repeat with doubled counts while their p50s disagree by > 10%."""
    attempts = []
    for attempt in range(MAX_RETRIES + 1):
        first = time_calls(call, warmup, runs)
        second = time_calls(call, 0, runs)
        p50s = [float(np.percentile(first, 50)), float(np.percentile(second, 50))]
        spread = abs(p50s[0] - p50s[1]) / min(p50s)
        attempts.append({"warmup": warmup, "runs": runs, "p50_first": p50s[0], "p50_second": p50s[1], "difference": spread})
        if spread <= STABILITY_TOLERANCE or attempt == MAX_RETRIES:
            break
        warmup, runs = warmup * 2, runs * 2
    note = "stable" if spread <= STABILITY_TOLERANCE else f"unstable after {MAX_RETRIES} retries"
    if len(attempts) > 1:
        note += f" (runs raised to {runs}, warm-up to {warmup} after series disagreed)"
    return first + second, {"tolerance": STABILITY_TOLERANCE, "attempts": attempts, "note": note}


def memory_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux); ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def random_input(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype)


class LiteRTModel:
    RUNTIME = "litert"
    PACKAGE = "ai-edge-litert"

    @staticmethod
    def import_runtime() -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.threads = path, threads
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inputs = [(d["index"], self._input(d)) for d in self.interpreter.get_input_details()]

    @staticmethod
    def _input(details: dict) -> np.ndarray:
        """Random values of the declared shape; for a quantized input, a random [0, 1) image quantized
        with the model's own scale and zero point (raw random integers can drive an int8 DIV to zero)."""
        scale, zero = details.get("quantization", (0.0, 0))
        if np.dtype(details["dtype"]).kind in "iu" and scale:
            info = np.iinfo(details["dtype"])
            real = random_input(details["shape"], np.float32)
            return np.clip(np.round(real / scale + zero), info.min, info.max).astype(details["dtype"])
        return random_input(details["shape"], details["dtype"])

    def __call__(self) -> None:
        for index, value in self.inputs:
            self.interpreter.set_tensor(index, value)
        self.interpreter.invoke()

    def input_spec(self) -> list[dict]:
        return [{"shape": [int(s) for s in d["shape"]], "dtype": str(np.dtype(d["dtype"]))} for d in self.interpreter.get_input_details()]

    def graph_macs(self) -> int:
        """Multiply-accumulates per inference from the graph's shapes, counted like fvcore / thop
        (convolutions, fully connected layers, batch matmuls; elementwise work not counted)."""
        shapes = {d["index"]: [int(s) for s in d["shape"]] for d in self.interpreter.get_tensor_details()}
        total = 0
        for op in self.interpreter._get_ops_details():
            inputs, outputs = [int(t) for t in op["inputs"]], [int(t) for t in op["outputs"]]
            if not inputs or not outputs or outputs[0] not in shapes:
                continue
            out, name = shapes[outputs[0]], op["op_name"]
            if name in ("CONV_2D", "FULLY_CONNECTED"):  # weights (O, [KH, KW,] I)
                total += int(np.prod(out)) * int(np.prod(shapes[inputs[1]][1:]))
            elif name == "DEPTHWISE_CONV_2D":  # weights (1, KH, KW, O)
                total += int(np.prod(out)) * shapes[inputs[1]][1] * shapes[inputs[1]][2]
            elif name == "BATCH_MATMUL":  # lhs (..., M, K) or, adjointed, (..., K, M): either way K = its last two dims / M
                lhs = shapes[inputs[0]]
                total += int(np.prod(out)) * lhs[-1] * lhs[-2] // out[-2]
            elif name == "TRANSPOSE_CONV":  # weights (O, KH, KW, I), input (N, H, W, I)
                weights = shapes[inputs[1]]
                total += int(np.prod(shapes[inputs[2]])) * int(np.prod(weights[:3]))
        return total

    def op_breakdown(self, top: int) -> dict:
        """Time per op type (`LiteRTOpTimer`), op counts by type and which ran inside the XNNPACK delegate."""
        ops = self.interpreter._get_ops_details()
        original = [o for o in ops if o["op_name"] != "DELEGATE"]
        delegated = set()
        producers = {int(t): o["index"] for o in original for t in o["outputs"]}
        consumers: dict[int, list[int]] = {}
        for o in original:
            for t in o["inputs"]:
                consumers.setdefault(int(t), []).append(o["index"])
        by_index = {o["index"]: o for o in original}
        for node in (o for o in ops if o["op_name"] == "DELEGATE"):
            forward, stack = set(), [c for t in node["inputs"] for c in consumers.get(int(t), [])]
            while stack:
                i = stack.pop()
                if i not in forward:
                    forward.add(i)
                    stack += [c for t in by_index[i]["outputs"] for c in consumers.get(int(t), [])]
            backward, stack = set(), [producers[int(t)] for t in node["outputs"] if int(t) in producers]
            while stack:
                i = stack.pop()
                if i not in backward:
                    backward.add(i)
                    stack += [producers[int(t)] for t in by_index[i]["inputs"] if int(t) in producers]
            delegated |= forward & backward
        counts: dict[str, list[int]] = {}
        for o in original:
            entry = counts.setdefault(o["op_name"], [0, 0])
            entry[0] += 1
            entry[1] += o["index"] in delegated
        fallback = {name: n - d for name, (n, d) in counts.items() if n > d}
        timed, untimed = LiteRTOpTimer(self.path, self.threads).op_times([value for _, value in self.inputs])
        per_op: dict[tuple, dict] = {}
        for row in timed:
            kind = "delegated (XNNPACK)" if row["delegated"] else "builtin kernel"
            entry = per_op.setdefault((row["op"], kind), {"op": row["op"], "kind": kind, "calls": 0, "ms": 0.0})
            entry["calls"] += 1
            entry["ms"] += row["ms"]
        return {"source": "each op timed alone (LiteRTOpTimer: the LiteRT Python API has no op profiler) + op graph", "ops": len(original),
                "top_ops": sorted(per_op.values(), key=lambda e: -e["ms"])[:top], "isolated_ops_ms": sum(r["ms"] for r in timed),
                "module_ms": module_times(timed),
                "untimed_ops": untimed,
                "delegated_ops": len(delegated), "delegated_fraction": len(delegated) / max(len(original), 1),
                "delegate_partitions": len(ops) - len(original), "fallback_ops": fallback,
                "top_op_types": sorted(([name, n] for name, (n, _) in counts.items()), key=lambda x: -x[1])[:top],
                "op_counts": dict(sorted(((name, n) for name, (n, _) in counts.items()), key=lambda x: -x[1]))}


class LiteRTOpTimer:
    """Time of each op of a .tflite's main graph, run alone as a one-op model on the values it sees in
    a reference run of the whole model: LiteRT's Python API has no op profiler. Weights that ops of
    constants produce (AI Edge Quantizer's DEQUANTIZE of int8 weights) go with their op, as XNNPACK
    folds them at init; ops of constants alone are not timed. XNNPACK fuses little across ops, so
    the times add up to about the whole model's (the record gives both). The exception seen: a PAD
    before a convolution becomes that convolution's padding in the whole model, alone it is a copy."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.tools import flatbuffer_utils

        self.path, self.threads, self.utils = path, threads, flatbuffer_utils
        self.flat = flatbuffer_utils.read_model(str(path))
        self.graph = self.flat.subgraphs[0]
        self.producer: dict[int, int] = {}
        self.constant = {t for t in range(len(self.graph.tensors)) if self._has_data(t)}
        for index, op in enumerate(self.graph.operators):
            self.producer.update((int(t), index) for t in op.outputs)
            if all(t in self.constant for t in self._inputs(op)):
                self.constant.update(int(t) for t in op.outputs)

    def _has_data(self, tensor: int) -> bool:
        buffer = self.flat.buffers[self.graph.tensors[tensor].buffer]
        return (buffer.data is not None and len(buffer.data) > 0) or bool(buffer.size)

    @staticmethod
    def _inputs(op) -> list[int]:
        return [int(t) for t in op.inputs if t >= 0]

    def op_model(self, index: int) -> tuple[bytes, list[int]]:
        """The one-op model of op `index` (with the ops that compute its constant inputs) and the
        tensors it is fed."""
        import copy

        from ai_edge_litert import schema_py_generated as schema

        op = self.graph.operators[index]
        chain, pending = set(), [t for t in self._inputs(op) if t in self.constant and not self._has_data(t)]
        while pending:
            producer = self.producer[pending.pop()]
            if producer not in chain:
                chain.add(producer)
                pending += [t for t in self._inputs(self.graph.operators[producer]) if not self._has_data(t)]
        model, sub = schema.ModelT(), schema.SubGraphT()
        model.version, model.operatorCodes, model.buffers, model.subgraphs = self.flat.version, self.flat.operatorCodes, [schema.BufferT()], [sub]
        sub.tensors, sub.operators, renumbered = [], [], {}

        def tensor(t: int) -> int:
            if t < 0:
                return t
            if t not in renumbered:
                copied = copy.copy(self.graph.tensors[t])
                copied.buffer = 0
                if self._has_data(t):
                    model.buffers.append(self.flat.buffers[self.graph.tensors[t].buffer])
                    copied.buffer = len(model.buffers) - 1
                renumbered[t] = len(sub.tensors)
                sub.tensors.append(copied)
            return renumbered[t]

        for step in [*sorted(chain), index]:
            copied = copy.copy(self.graph.operators[step])
            copied.inputs = [tensor(int(t)) for t in copied.inputs]
            copied.outputs = [tensor(int(t)) for t in copied.outputs]
            copied.intermediates = None
            sub.operators.append(copied)
        fed = [t for t in self._inputs(op) if t not in self.constant]
        sub.inputs, sub.outputs = [renumbered[t] for t in fed], list(sub.operators[-1].outputs)
        return bytes(self.utils.convert_object_to_bytearray(model)), fed

    def timed_ops(self) -> list[int]:
        """Indices of the ops that run per inference (not on constants alone)."""
        return [i for i, op in enumerate(self.graph.operators) if not all(t in self.constant for t in self._inputs(op))]

    def reference_run(self, inputs: list[np.ndarray]):
        """An interpreter that ran the whole model on `inputs` with builtin kernels and kept every tensor."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is what this needs
            warnings.simplefilter("ignore")
            reference = Interpreter(model_path=str(self.path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                    experimental_preserve_all_tensors=True)
        reference.allocate_tensors()
        for detail, value in zip(reference.get_input_details(), inputs, strict=True):
            reference.set_tensor(detail["index"], value)
        reference.invoke()
        return reference

    def op_times(self, inputs: list[np.ndarray], warmup: int = 3, runs: int = 15) -> tuple[list[dict], int]:
        """One row per timed op (op type, activation dtype, delegated or not, median ms, module) and
        how many ops could not be run alone."""
        from ai_edge_litert.interpreter import Interpreter

        reference = self.reference_run(inputs)
        rows, failed = [], 0
        for index in self.timed_ops():
            op = self.graph.operators[index]
            try:
                content, fed = self.op_model(index)
                alone = Interpreter(model_content=content, num_threads=self.threads)
                alone.allocate_tensors()
                for detail, t in zip(alone.get_input_details(), fed, strict=True):
                    alone.set_tensor(detail["index"], reference.get_tensor(t))
                ms = float(np.median(time_calls(alone.invoke, warmup, runs)))
            except (RuntimeError, ValueError):  # an op that cannot run alone (control flow, a custom op)
                failed += 1
                continue
            name = self.utils.opcode_to_name(self.flat, op.opcodeIndex) or "CUSTOM"
            dtype = self.utils.type_to_name(self.graph.tensors[fed[0]].type).lower() if fed else "-"
            delegated = any(o["op_name"] == "DELEGATE" for o in alone._get_ops_details())
            rows.append({"op": f"{name} ({dtype})", "delegated": delegated, "ms": ms, "module": self._module(op)})
        return rows, failed

    def _module(self, op) -> str:
        """Where the op sits: its output's name up to the last '/' (lagchand-edge writes
        `<module path>/t<index>`; TensorFlow-made models have their layer scopes there)."""
        name = self.graph.tensors[int(op.outputs[0])].name
        name = (name.decode() if isinstance(name, bytes) else str(name or "")).split(";")[0]
        return name.rsplit("/", 1)[0] if "/" in name else ""


def module_times(rows: list[dict], depth: int = 4) -> dict[str, float]:
    """Time of every module scope down to `depth` levels ('model', 'model.graph', ...; '.' and '/'
    both separate levels), each the sum of the ops inside it; ops outside any scope under ''."""
    totals: dict[str, float] = {}
    for row in rows:
        scope = row["module"]
        cuts = ([i for i, c in enumerate(scope) if c in "./"] + [len(scope)])[:depth]
        for prefix in dict.fromkeys(scope[:i] for i in cuts):
            totals[prefix] = totals.get(prefix, 0.0) + row["ms"]
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


class ExecuTorchModel:
    RUNTIME = "executorch"
    PACKAGE = "executorch"

    @staticmethod
    def import_runtime() -> None:
        import executorch.runtime  # noqa: F401  (brings torch: the ExecuTorch Python runtime takes torch tensors)

    def __init__(self, path: Path, threads: int, etdump: bool = False) -> None:
        import executorch.extension.pybindings.portable_lib as portable
        from executorch.runtime import Runtime

        portable._unsafe_reset_threadpool(threads)
        self.program = Runtime.get().load_program(str(path), enable_etdump=etdump, debug_buffer_size=0)
        self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.spec = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        import torch  # on a device without torch, use ExecuTorch's executor_runner binary instead (README)

        self.inputs = [torch.from_numpy(random_input(tuple(m.sizes()), _scalar_dtype(m.dtype()))) for m in self.spec]

    def __call__(self) -> None:
        self.method.execute(self.inputs)

    def input_spec(self) -> list[dict]:
        return [{"shape": list(m.sizes()), "dtype": str(_scalar_dtype(m.dtype()))} for m in self.spec]

    def graph_macs(self) -> None:
        """Unknown: a .pte's delegated XNNPACK blobs do not expose their layers' shapes to Python."""
        return None

    @classmethod
    def op_breakdown(cls, path: Path, threads: int, top: int, runs: int = 5) -> dict:
        """ETDump of a few runs, read by executorch.devtools.Inspector: time per op type."""
        import tempfile

        from executorch.devtools import Inspector

        model = cls(path, threads, etdump=True)
        for _ in range(runs):
            model()
        with tempfile.TemporaryDirectory() as tmp:
            dump = os.path.join(tmp, "run.etdp")
            model.program.write_etdump_result_to_file(dump, os.path.join(tmp, "debug.bin"))
            frame = Inspector(etdump_path=dump).to_dataframe()
        frame = frame[frame["event_block_name"] == "Execute"]
        per_op: dict[str, dict] = {}
        for name, delegated, avg in zip(frame["event_name"], frame["is_delegated_op"], frame["avg (ms)"], strict=True):
            if name in ("OPERATOR_CALL", "DELEGATE_CALL", "Method::execute"):
                continue
            kind = "delegated (XNNPACK)" if delegated else "portable kernel"
            key = name.split(" #")[0].removeprefix("native_call_")
            entry = per_op.setdefault(key, {"op": key, "kind": kind, "calls": 0, "ms": 0.0})
            entry["calls"] += 1
            entry["ms"] += float(avg)
        execute = float(frame.loc[frame["event_name"] == "Method::execute", "avg (ms)"].sum())
        ranked = sorted(per_op.values(), key=lambda e: -e["ms"])
        portable = [e for e in ranked if e["kind"] == "portable kernel"]
        portable_ms, delegated_ms = sum(e["ms"] for e in portable), sum(e["ms"] for e in ranked if e["kind"] != "portable kernel")
        # a call's time in no op's event: above all the delegate re-planning its graph's shapes
        # (`xnn_reshape_runtime`) before every call, which grows with the number of ops (README, Latency)
        return {"source": "ETDump + executorch.devtools.Inspector", "execute_ms": execute, "top_ops": ranked[:top],
                "op_counts": {e["op"]: e["calls"] for e in sorted(ranked, key=lambda e: -e["calls"])},
                "portable_ops": {e["op"]: e["calls"] for e in portable}, "portable_ms": portable_ms, "delegated_ms": delegated_ms,
                "outside_ops_ms": max(execute - portable_ms - delegated_ms, 0.0),
                "delegate_calls": int((frame["event_name"] == "DELEGATE_CALL").sum())}


class EagerModel:
    """A LAGCHand checkpoint as the FP32 eager PyTorch model (host only: needs lagchand-edge)."""

    RUNTIME = "pytorch-eager"
    PACKAGE = "torch"

    @staticmethod
    def import_runtime() -> None:
        import lagchand_edge.checkpoint  # noqa: F401

    def __init__(self, path: Path, threads: int) -> None:
        import torch

        from lagchand_edge.checkpoint import load_checkpoint
        from lagchand_edge.model import DeployModel

        torch.set_num_threads(threads)
        self.model = DeployModel(load_checkpoint(path), deployed_form=False).eval()  # PyTorch as trained
        size = self.model.model.cfg.image_size
        self.image = torch.from_numpy(random_input((1, 3, size, size), np.float32))

    def __call__(self) -> None:
        import torch

        with torch.inference_mode():
            self.model(self.image)

    def input_spec(self) -> list[dict]:
        return [{"shape": list(self.image.shape), "dtype": "float32"}]

    def graph_macs(self) -> None:
        return None  # the profiler counts the config's MACs itself


def _scalar_dtype(scalar_type) -> np.dtype:
    name = str(scalar_type).split(".")[-1].lower()
    return np.dtype({"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32", "char": "int8",
                     "byte": "uint8", "bool": "bool"}.get(name, "float32"))


def profile(path: Path, threads: int, warmup: int, runs: int, ops: bool = True, top: int = 12) -> dict:
    """Load, first inference, stable timed runs, memory and (optionally) the op breakdown of one model."""
    suffix = path.suffix.lower()
    kinds = {".tflite": LiteRTModel, ".pte": ExecuTorchModel, ".safetensors": EagerModel}
    if suffix not in kinds or not path.is_file():
        raise SystemExit(f"error: {path}: expected an existing .tflite or .pte file (or, on a host, a .safetensors checkpoint)")
    kind = kinds[suffix]
    try:
        kind.import_runtime()
    except ImportError as exc:
        raise SystemExit(f"error: {path}: the {kind.PACKAGE} runtime is not installed ({exc})") from None
    rss_before = memory_mb("VmRSS")
    start = time.perf_counter_ns()
    try:
        model = kind(path, threads)
    except Exception as exc:  # a file that is not a model, or a model this runtime cannot load
        raise SystemExit(f"error: {path}: cannot load as a {kind.RUNTIME} model ({type(exc).__name__}: {str(exc)[:200]})") from None
    load_ms = (time.perf_counter_ns() - start) / 1e6
    start = time.perf_counter_ns()
    model()
    first_ms = (time.perf_counter_ns() - start) / 1e6
    latencies, stability = stable_latencies(model, warmup, runs)
    record = {
        "schema": RECORD_SCHEMA, "model": path.name, "sha256": sha256(path), "size_bytes": path.stat().st_size,
        "runtime": kind.RUNTIME, "runtime_version": package_version(kind.PACKAGE), "threads": threads, "inputs": model.input_spec(),
        "load_ms": load_ms, "first_inference_ms": first_ms, "latency_ms": latency_stats(latencies), "latencies_ms": latencies,
        "stability": stability, "peak_rss_increase_mb": max(memory_mb("VmHWM") - rss_before, 0.0), "graph_macs": model.graph_macs(),
        "cpu": cpu_model(), "machine": platform.machine(), "host": platform.node(), "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if ops and kind is not EagerModel:
        record["op_breakdown"] = kind.op_breakdown(path, threads, top) if kind is ExecuTorchModel else model.op_breakdown(top)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--label", default=None, help="Where this ran (default: host name), shown in merged reports.")
    parser.add_argument("--no-ops", action="store_true", help="Skip the op-level breakdown.")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.warmup < 0 or args.runs < 1:
        raise SystemExit("error: --threads and --runs must be >= 1, --warmup >= 0")
    record = profile(args.model, args.threads, args.warmup, args.runs, ops=not args.no_ops)
    record["label"] = args.label or platform.node()
    json.dump(record, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
