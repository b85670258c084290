"""The preprocessing cache serves what the reader serves; augmentation moves targets with the pixels."""

import json

import numpy as np
import pytest
import torch

from lagchand_edge.data.cache import CachedDataset, open_dataset, write_cache
from lagchand_edge.data.interhand import InterHandDataset
from lagchand_edge.errors import UserError
from lagchand_edge.train.augment import _flip, _jitter_crop, augment


def test_cache_serves_the_readers_samples(synth_root, tmp_path):
    card = write_cache(synth_root, "test", tmp_path / "cache", workers=0)
    assert card["samples"] == 8 and card["skipped"] == {}
    cached, read = open_dataset(tmp_path / "cache", "test"), InterHandDataset(synth_root, "test")
    assert isinstance(cached, CachedDataset) and len(cached) == len(read) and cached.has_mesh
    for index in (0, 5):
        a, b = cached.load(index), read.load(index)
        assert a["sample_id"] == b["sample_id"]
        for key in ("image", "joints_cam", "vertices_cam", "joints_2d", "joint_valid", "k"):
            np.testing.assert_array_equal(a[key], b[key])
    assert "image" not in cached.load(0, with_image=False)


def test_a_cache_whose_source_changed_is_refused(synth_root, tmp_path):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(synth_root, source)
    write_cache(source, "test", tmp_path / "cache", workers=0)
    path = source / "annotations/test/InterHand2.6M_test_joint_3d.json"
    data = json.loads(path.read_text())
    first = next(iter(data))
    frame = next(iter(data[first]))
    data[first][frame]["world_coord"][0][0] += 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="changed or is gone"):
        CachedDataset(tmp_path / "cache")
    with pytest.raises(UserError, match="holds split 'test', not 'train'"):
        CachedDataset(tmp_path / "cache", "train", verify=False)


def _dot_batch(size=64):
    """Images with one bright pixel per hand at that hand's first 2D joint (one pixel wide)."""
    images = torch.zeros(2, 3, size, size)
    joints_2d = torch.tensor([[[[20.5, 30.5]] * 21, [[40.5, 10.5]] * 21], [[[10.5, 50.5]] * 21, [[33.5, 33.5]] * 21]])
    for b in range(2):
        for h in range(2):
            x, y = joints_2d[b, h, 0].long()
            images[b, h, y, x] = 1.0  # channel = hand, so a swap is visible
    batch = {"joints_2d": joints_2d, "vertices_2d": joints_2d[:, :, :3].clone(),
             "joints_cam": torch.randn(2, 2, 21, 3), "vertices_cam": torch.randn(2, 2, 3, 3), "joint_valid": torch.rand(2, 2, 21) > 0.3}
    return images, batch


def _bright(image_channel):
    flat = int(torch.argmax(image_channel))
    size = image_channel.shape[-1]
    return np.array([flat % size + 0.5, flat // size + 0.5])


def test_flip_swaps_hands_and_mirrors_pixels_and_points():
    images, batch = _dot_batch()
    flipped, out = _flip(images, batch, torch.tensor([True, False]))
    for h in range(2):  # the new hand h was the old hand 1 - h, drawn in channel 1 - h
        np.testing.assert_allclose(_bright(flipped[0, 1 - h]), out["joints_2d"][0, h, 0].numpy())
    torch.testing.assert_close(out["joints_cam"][0, 0, :, 0], -batch["joints_cam"][0, 1, :, 0])
    torch.testing.assert_close(out["joint_valid"][0], batch["joint_valid"][0].flip(0))
    torch.testing.assert_close(out["joints_2d"][1], batch["joints_2d"][1])  # not flipped
    twice = _flip(*_flip(images, batch, torch.tensor([True, True])), torch.tensor([True, True]))
    torch.testing.assert_close(twice[0], images)
    torch.testing.assert_close(twice[1]["vertices_cam"], batch["vertices_cam"])


def test_crop_jitter_moves_points_with_the_pixels():
    images, batch = _dot_batch()
    moved, out = _jitter_crop(images, batch, np.random.default_rng(4))
    for b in range(2):
        for h in range(2):
            assert np.abs(_bright(moved[b, h]) - out["joints_2d"][b, h, 0].numpy()).max() <= 1.0


def test_augment_keeps_images_in_range_and_is_seeded():
    images, batch = _dot_batch()
    a = augment(images, batch, np.random.default_rng(1))
    b = augment(images, batch, np.random.default_rng(1))
    torch.testing.assert_close(a[0], b[0])
    assert a[0].min() >= 0 and a[0].max() <= 1
