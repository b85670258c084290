"""Where InterHand2.6M keeps its files, so the reader and the synthetic writer agree.

The official release: `annotations/{split}/InterHand2.6M_{split}_{kind}.json` and
`images/{split}/<file_name>`. Flattened copies (like the real sample under ../shared/data, with
`{split}_interhand2.6m_{kind}.json` beside the images) are found too.
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")
KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
DATASET_CARD = "dataset.json"


def annotation_path(root: Path, split: str, kind: str) -> Path:
    """Official location of one annotation file (what the synthetic writer produces)."""
    return root / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def find_annotation(root: Path, split: str, kind: str) -> Path | None:
    """The annotation file of `kind`, in the official place or a flattened copy; None if absent."""
    candidates = [
        annotation_path(root, split, kind),
        root / split / f"InterHand2.6M_{split}_{kind}.json",
        root / f"InterHand2.6M_{split}_{kind}.json",
        root / f"{split}_interhand2.6m_{kind}.json",
    ]
    for path in candidates:
        if path.is_file():
            return path
    wanted = {p.name.lower() for p in candidates}
    for folder in {root, root / "annotations" / split}:
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.lower() in wanted:
                    return path
    return None


def image_dir(root: Path, split: str) -> Path:
    """Folder that `file_name`s are relative to: images/{split}/ in the release, else the root."""
    official = root / "images" / split
    return official if official.is_dir() else root
