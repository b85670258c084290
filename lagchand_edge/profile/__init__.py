"""Latency profiling: each artifact in its real runtime (a fresh process each), the FP32 eager
model alongside, optional MediaPipe anchors, op-level breakdowns, and the report."""
