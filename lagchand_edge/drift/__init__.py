"""Accuracy drift of edge artifacts against the FP32 reference: harness, tallies, report, sensitivity."""
