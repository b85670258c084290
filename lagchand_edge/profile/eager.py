"""The FP32 eager PyTorch model timed like an artifact: `python -m lagchand_edge.profile.eager`.

It runs in its own process (as every artifact does) so load time and peak memory are its own,
and prints the same JSON record as the device runner, sharing its timing and statistics code.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from apps.device_runner import device_runner as dr


def profile_eager(checkpoint: Path | None, threads: int, warmup: int, runs: int) -> dict:
    import torch

    from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint
    from lagchand_edge.model import DeployModel

    torch.set_num_threads(threads)
    checkpoint = Path(checkpoint) if checkpoint else bundled_checkpoint()
    rss_before = dr.memory_mb("VmRSS")
    start = time.perf_counter_ns()
    model = DeployModel(load_checkpoint(checkpoint), deployed_form=False).eval()  # PyTorch as trained
    load_ms = (time.perf_counter_ns() - start) / 1e6
    image = torch.rand(1, 3, model.model.cfg.image_size, model.model.cfg.image_size, generator=torch.Generator().manual_seed(0))

    def call() -> None:
        with torch.inference_mode():
            model(image)

    start = time.perf_counter_ns()
    call()
    first_ms = (time.perf_counter_ns() - start) / 1e6
    latencies, stability = dr.stable_latencies(call, warmup, runs)
    return {
        "schema": dr.RECORD_SCHEMA, "model": checkpoint.name, "sha256": dr.sha256(checkpoint), "size_bytes": checkpoint.stat().st_size,
        "runtime": "pytorch-eager", "runtime_version": torch.__version__, "threads": threads,
        "inputs": [{"shape": list(image.shape), "dtype": "float32"}], "load_ms": load_ms, "first_inference_ms": first_ms,
        "latency_ms": dr.latency_stats(latencies), "latencies_ms": latencies, "stability": stability,
        "peak_rss_increase_mb": max(dr.memory_mb("VmHWM") - rss_before, 0.0), "cpu": dr.cpu_model(), "machine": platform.machine(),
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the FP32 eager model; prints one JSON record.")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    json.dump(profile_eager(args.checkpoint, args.threads, args.warmup, args.runs), sys.stdout)


if __name__ == "__main__":
    main()
