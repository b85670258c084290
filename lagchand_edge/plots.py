"""Plot helpers shared by the reports: matplotlib on the Agg backend (no display needed)."""

from __future__ import annotations

import base64
import html
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


def plot_scatter(rows: list[dict], x_key: str, x_label: str, path: Path, pareto: bool = False) -> None:
    plt = figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    points = [(r[x_key], r["accuracy"]["mpjpe"], r["artifact"]) for r in rows if r.get(x_key) is not None and "accuracy" in r]
    for x, y, name in points:
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if pareto and points:
        front, best = [], float("inf")
        for x, y, _ in sorted(points):
            if y < best - 1e-3:  # a point must be better by a visible margin (mm) to join the front
                front.append((x, y))
                best = y
        ax.plot(*zip(*front, strict=True), color="#2a9d4a", linestyle="--", label="Pareto front")
        ax.legend()
    ax.set_xlabel(x_label)
    ax.set_ylabel("MPJPE vs GT (mm)")
    ax.set_title(f"accuracy vs {x_label.split(' (')[0]}")
    save_figure(fig, path)


def html_figures(images: list[tuple[str, Path]]) -> str:
    """PNG files as <figure>s with the image data embedded, so the HTML page stands alone."""
    return "".join(f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
                   f"<figcaption>{html.escape(title)}</figcaption></figure>" for title, path in images)
