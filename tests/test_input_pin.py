"""A pin on the whole input path: the real sample, read, cropped and fed to the trained test model,
gives the outputs recorded in `tests/assets/tiny_on_real_sample.npz`.

Colour order, the ImageNet normalisation, the crop and the reader's hand layout each move these
outputs by far more than the tolerance (CPUs differ by ~1e-4 mm in float rounding). After a
deliberate change to the input path, look at its pictures, then record anew:
`.venv/bin/python tests/test_input_pin.py`.
"""

from pathlib import Path

import numpy as np
import torch

PIN = Path(__file__).parent / "assets" / "tiny_on_real_sample.npz"
TOLERANCE_MM = 0.01


def _outputs(real_root: Path, checkpoint: Path) -> dict[str, np.ndarray]:
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.data.transforms import to_model_input

    dataset = InterHandDataset(real_root, "test")
    samples = [dataset.load(i) for i in range(len(dataset))]
    images = to_model_input(np.stack([s["image"] for s in samples]))
    with torch.no_grad():
        vertices, _, camera = load_checkpoint(checkpoint)(images)[:3]
    return {"vertices": vertices.numpy(), "camera": camera.numpy(), "joints_2d": np.stack([s["joints_2d"] for s in samples])}


def test_input_path_gives_the_pinned_outputs(real_root, tiny_checkpoint):
    pinned = np.load(PIN)
    got = _outputs(real_root, tiny_checkpoint)
    np.testing.assert_allclose(got["joints_2d"], pinned["joints_2d"], atol=1e-3)  # px in the crop: the reader and the box
    assert np.abs(got["vertices"] - pinned["vertices"]).max() * 1000 <= TOLERANCE_MM
    np.testing.assert_allclose(got["camera"], pinned["camera"], atol=1e-5)


if __name__ == "__main__":
    from conftest import REAL_SAMPLE, TINY_TRAINED

    np.savez(PIN, **_outputs(REAL_SAMPLE, TINY_TRAINED))
    print(f"wrote {PIN}")
