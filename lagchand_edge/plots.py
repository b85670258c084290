"""Plot helpers shared by the reports: matplotlib on the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path


def figure():
    """matplotlib.pyplot, with the Agg backend selected first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    figure().close(fig)


def plot_scatter(rows: list[dict], x_key: str, x_label: str, path: Path, pareto: bool = False, reference_mpjpe: float | None = None,
                 gate_mm: float | None = None, scale: float = 1.0) -> None:
    """Accuracy (MPJPE vs GT) against size or latency, one marker per artifact named in the legend
    (labels beside points collide). With `reference_mpjpe`, FP32's line, and with `gate_mm` the
    int8 gate's band around it: the y axis then spans at least the gate, so a 0.2 mm spread does not look like a
    landslide. `pareto` draws the front (better on both axes) when two or more points make it."""
    plt = figure()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    points = sorted((r[x_key] * scale, r["accuracy"]["mpjpe"], r["artifact"]) for r in rows if r.get(x_key) is not None and "accuracy" in r)
    markers = "osD^vP*Xh<>"
    for i, (x, y, name) in enumerate(points):
        ax.scatter(x, y, s=46, marker=markers[i % len(markers)], label=name, zorder=3)
    if reference_mpjpe is not None:
        ax.axhline(reference_mpjpe, color="#555", linewidth=1, label="FP32 reference")
        if gate_mm is not None:
            ax.axhspan(reference_mpjpe - gate_mm, reference_mpjpe + gate_mm, color="#2a9d4a", alpha=0.08, label=f"int8 gate (±{gate_mm:g} mm)")
    if pareto:
        front, best = [], float("inf")
        for x, y, _ in points:
            if y < best - 1e-3:  # a point must be better by a visible margin (mm) to join the front
                front.append((x, y))
                best = y
        if len(front) >= 2:
            ax.plot(*zip(*front, strict=True), color="#2a9d4a", linestyle="--", label="Pareto front")
    ax.set_xlabel(x_label)
    ax.set_ylabel("MPJPE vs GT (mm)")
    ax.set_title(f"accuracy vs {x_label.split(' (')[0]}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    save_figure(fig, path)
