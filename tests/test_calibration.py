"""Calibration sample selection: reproducible, spread over captures, recorded by id and hash."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from calibration.select import select_calibration
from lagchand_edge.data.interhand import InterHandDataset
from lagchand_edge.errors import UserError


def test_selection_is_reproducible_and_round_robin_over_captures(synth_root):
    captures = {r.sample_id.split("/")[0] for r in InterHandDataset(synth_root, "test").records}
    assert len(captures) >= 2  # the fixture set spans several captures, or this test would prove nothing
    first, again, other = (select_calibration(synth_root, 6, seed=s) for s in (3, 3, 4))
    assert first.ids == again.ids and torch.equal(first.images, again.images)
    assert first.ids != other.ids  # another seed, another shuffle within each capture
    leading = [sample_id.split("/")[0] for sample_id in first.ids[: len(captures)]]
    assert sorted(leading) == sorted(captures)  # one from every capture before a second from any
    assert first.ids_sha256 == hashlib.sha256("\n".join(first.ids).encode()).hexdigest()
    manifest = first.manifest()
    assert manifest["count"] == 6 == len(set(manifest["ids"])) and manifest["ids_sha256"] == first.ids_sha256
    assert first.images.shape == (6, 3, 256, 256) and 0 <= first.images.min() and first.images.max() <= 1
    assert len(select_calibration(synth_root, 50).ids) == len(InterHandDataset(synth_root, "test"))  # asks for more than there is


def test_a_plain_image_folder_calibrates_with_centre_squares(tmp_path):
    """#23: one's own photos as --calib-data: the centre square of each, reproducibly, unreadable files passed over."""
    for i in range(5):  # blue borders left and right of a red centre square
        image = np.zeros((200, 300 + 40 * i, 3), np.uint8)
        image[..., 2] = 255
        left = (image.shape[1] - 200) // 2
        image[:, left : left + 200] = (255, 0, 0)
        Image.fromarray(image).save(tmp_path / f"photo{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    chosen = select_calibration(tmp_path, 4, seed=3)
    again = select_calibration(tmp_path, 4, seed=3)
    assert chosen.images.shape == (4, 3, 256, 256) and chosen.ids == again.ids and torch.equal(chosen.images, again.images)
    assert set(chosen.ids) <= {f"photo{i}.png" for i in range(5)} and "image folder" in chosen.source
    red = chosen.images[:, 0, 2:-2, 2:-2]  # away from the resampled edge
    assert float(red.min()) > 0.95 and float(chosen.images[:, 2, 2:-2, 2:-2].max()) < 0.05  # nothing of the blue borders
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        select_calibration(tmp_path / "empty", 4)


def test_a_photo_folder_calibrates_around_the_hands_the_detector_finds(real_root, tmp_path):
    """#23: with a hand finder (`convert --calib-detect`) each crop is the square the predict app would
    use; a photo where it finds no hands falls back to its centre square, and the source says how many."""
    from apps.predict.detector import square_finder
    from lagchand_edge.profile.anchors import cached_detector

    try:
        find = square_finder(cached_detector())
    except UserError:
        pytest.skip("no palm detector cached here (lagchand-edge anchors fetch)")
    photos = sorted(real_root.glob("*.jpg"))
    squares = {path.name: find(np.asarray(Image.open(path).convert("RGB"))) for path in photos}
    assert 1 <= sum(square is not None for square in squares.values()) < len(photos)  # both kinds, or the test proves less
    for path in photos:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    found = select_calibration(tmp_path, len(photos), find=find)
    centred = select_calibration(tmp_path, len(photos))
    hits = sum(square is not None for square in squares.values())
    assert f"squares around the hands found in {hits}, centre squares for {len(photos) - hits}" in found.source
    for i, name in enumerate(found.ids):
        same = torch.equal(found.images[i], centred.images[centred.ids.index(name)])
        assert same == (squares[name] is None), name


def test_calib_detect_needs_a_folder_of_photos(tiny_checkpoint, synth_root, tmp_path):
    from lagchand_edge.convert import build_artifacts

    with pytest.raises(UserError, match="folder of photos"):
        build_artifacts("tflite", "int8", tmp_path, tiny_checkpoint, calib_data=synth_root, calib_find=lambda image: None)
