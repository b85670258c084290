"""Scene statistics of an InterHand2.6M-format root: how hands sit relative to the camera.

What separates an easy set from a hard one, and a synthetic set from the real capture, is how
the hands face the camera, how large they are in the crop and how far apart they are. These are
computed from the annotations alone (joints suffice, so the joints-only real sample works too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lagchand_edge.data.interhand import InterHandDataset
from lagchand_edge.hand.joints import INTERHAND_JOINT_NAMES, MIDDLE_MCP, WRIST

INDEX_MCP, PINKY_MCP = INTERHAND_JOINT_NAMES.index("index1"), INTERHAND_JOINT_NAMES.index("pinky1")
QUANTILES = (5, 25, 50, 75, 95)
FEW = 20  # below this many values a root is drawn value by value

#: name -> (unit, what it measures)
STATISTICS = {
    "image_angle_deg": ("deg", "image direction of wrist -> middle MCP in the crop (0 = fingers up, 90 = right, +-180 = down)"),
    "palm_to_camera_deg": ("deg", "angle between the palm's normal and the direction to the camera (0 = palm faces it, 180 = back)"),
    "hand_size_px": ("px", "longest side of a hand's 2D joint box in the 256 px crop"),
    "hands_distance_mm": ("mm", "3D distance between the two hands' middle MCPs"),
}


def hand_statistics(joints_cam: np.ndarray, joints_2d: np.ndarray, valid: np.ndarray) -> dict[str, list[float]]:
    """Per-hand and per-pair values of one sample: (2, 21, 3) camera mm, (2, 21, 2) crop px, (2, 21) valid."""
    out: dict[str, list[float]] = {name: [] for name in STATISTICS}
    for h in range(2):  # 0 left, 1 right
        if not valid[h, [WRIST, MIDDLE_MCP, INDEX_MCP, PINKY_MCP]].all():
            continue
        direction = joints_2d[h, MIDDLE_MCP] - joints_2d[h, WRIST]
        out["image_angle_deg"].append(float(np.degrees(np.arctan2(direction[0], -direction[1]))))
        j = joints_cam[h]
        normal = np.cross(j[INDEX_MCP] - j[WRIST], j[PINKY_MCP] - j[WRIST]) * (1.0 if h == 1 else -1.0)  # out of the palm
        to_camera = -j[[WRIST, INDEX_MCP, PINKY_MCP]].mean(0)
        cosine = normal @ to_camera / max(np.linalg.norm(normal) * np.linalg.norm(to_camera), 1e-9)
        out["palm_to_camera_deg"].append(float(np.degrees(np.arccos(np.clip(cosine, -1, 1)))))
        box = joints_2d[h][valid[h]]
        out["hand_size_px"].append(float((box.max(0) - box.min(0)).max()))
    if valid[:, MIDDLE_MCP].all():
        out["hands_distance_mm"].append(float(np.linalg.norm(joints_cam[0, MIDDLE_MCP] - joints_cam[1, MIDDLE_MCP])))
    return out


def dataset_statistics(root: Path, split: str = "test", num: int | None = 2000) -> dict:
    """Quantiles and shares of `STATISTICS` over up to `num` evenly spaced two-hand samples of a root."""
    dataset = InterHandDataset(root, split, strict=False)
    count = len(dataset) if num is None else min(num, len(dataset))
    values: dict[str, list[float]] = {name: [] for name in STATISTICS}
    for index in np.linspace(0, len(dataset) - 1, count).round().astype(int):
        sample = dataset.load(int(index), with_image=False)
        for name, items in hand_statistics(sample["joints_cam"], sample["joints_2d"], sample["joint_valid"]).items():
            values[name].extend(items)
    summary = {"root": str(root), "split": split, "samples": int(count), "skipped": dict(dataset.skipped), "statistics": {}}
    for name, items in values.items():
        array = np.asarray(items)
        entry = {"n": int(array.size), **{f"p{q}": (float(np.percentile(array, q)) if array.size else None) for q in QUANTILES}}
        summary["statistics"][name] = entry
    angle, palm = np.abs(values["image_angle_deg"]), np.asarray(values["palm_to_camera_deg"])
    summary["shares"] = {
        "upright (|image angle| <= 45 deg)": _share(angle <= 45), "upside down (|image angle| > 135 deg)": _share(angle > 135),
        "palm towards camera (< 60 deg)": _share(palm < 60), "back towards camera (> 120 deg)": _share(palm > 120),
    }
    summary["values"] = values
    return summary


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def plot_statistics(summaries: list[dict], path: Path) -> None:
    """One histogram per statistic, every root's distribution overlaid (densities)."""
    from lagchand_edge.plots import figure, save_figure

    plt = figure()
    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(4 * len(STATISTICS), 3.2))
    bins = {"image_angle_deg": np.linspace(-180, 180, 25), "palm_to_camera_deg": np.linspace(0, 180, 19)}
    for ax, (name, (unit, _)) in zip(axes, STATISTICS.items(), strict=True):
        for summary, colour in zip(summaries, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
            items, label = summary["values"][name], f"{Path(summary['root']).name} (n={len(summary['values'][name])})"
            if len(items) >= FEW:
                ax.hist(items, bins=bins.get(name, 20), density=True, alpha=0.5, color=colour, label=label)
            elif items:  # a handful of values: each one as a line, a histogram would be all spikes
                for i, value in enumerate(items):
                    ax.axvline(value, color=colour, linewidth=2, label=label if i == 0 else None)
        ax.set_title(name.replace("_", " ").rsplit(" ", 1)[0], fontsize=10)
        ax.set_xlabel(unit)
        ax.legend(fontsize=7)
    save_figure(fig, path)
