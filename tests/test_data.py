import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from lagchand_edge.data.appearance import NAIL_TINT, SKIN_TONES, skin_albedo
from lagchand_edge.data.interhand import InterHandDataset, SampleError, collate
from lagchand_edge.data.render import vertex_normals
from lagchand_edge.data.synth import generate_sample
from lagchand_edge.errors import UserError
from lagchand_edge.hand import load_hands
from lagchand_edge.hand.joints import MANO_JOINT_NAMES


def test_synthetic_set_reads_through_the_release_reader(synth_root):
    dataset = InterHandDataset(synth_root, "test")
    assert len(dataset) == 8 and dataset.has_mesh
    sample = dataset.load(0)
    assert sample["image"].shape == (256, 256, 3) and sample["image"].dtype == np.uint8
    assert sample["joints_cam"].shape == (2, 21, 3)
    assert sample["vertices_cam"].shape == (2, 780, 3)
    assert (sample["joints_2d"] > 0).all() and (sample["joints_2d"] < 256).all()
    assert 200 < sample["joints_cam"][..., 2].mean() < 2000  # mm in front of the camera


def test_gt_mesh_agrees_with_the_release_joints(synth_root):
    """Joints regressed from the mesh rebuilt from MANO params equal the joint_3d file."""
    dataset = InterHandDataset(synth_root, "test")
    hands = load_hands()
    for index in range(3):
        sample = dataset.load(index)
        for h, side in enumerate(("left", "right")):
            regressed = hands[side].joint_regressor @ sample["vertices_cam"][h]
            np.testing.assert_allclose(regressed, sample["joints_cam"][h], atol=0.05)


def test_rendering_is_deterministic_for_a_seed():
    a, _, ja = generate_sample(11, 5, (96, 96))
    b, _, jb = generate_sample(11, 5, (96, 96))
    c, _, _ = generate_sample(12, 5, (96, 96))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ja["left"], jb["left"])
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_hands_are_visible_in_synthetic_images():
    image, scene, joints = generate_sample(0, 0, (128, 128))
    from lagchand_edge.data import camera as cam

    uv = cam.project(cam.world_to_camera(joints["right"], scene.camrot, scene.campos), cam.intrinsics(scene.focal, scene.princpt))
    assert ((uv > -5) & (uv < 133)).all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_skin_shows_palm_back_and_nails(side):
    hand = load_hands("procedural")[side]
    normal_z = vertex_normals(hand.template, hand.faces)[:, 2]
    for tone in SKIN_TONES:
        colour = skin_albedo(hand, tone)
        nail = np.abs(colour - (0.3 * tone + 0.7 * NAIL_TINT)).max(1) < 1e-9
        palm, back = colour[normal_z < -0.5].mean(0), colour[(normal_z > 0.5) & ~nail].mean(0)
        assert palm.sum() > back.sum() + 0.1  # a visible palm-versus-back cue at every tone
        assert (normal_z[nail] > 0.35).all()
    tip_joints = [i for i, name in enumerate(MANO_JOINT_NAMES) if name.endswith("3")]
    owner = hand.skin_weights[:, tip_joints].argmax(1)
    assert sorted(set(owner[nail])) == list(range(5))  # one nail per finger


def test_real_sample_reads_in_joints_only_mode(real_root):
    dataset = InterHandDataset(real_root, "test")
    assert len(dataset) == 2  # two interacting frames; the single-hand frames are not two-hand samples
    assert not dataset.has_mesh
    ids = [dataset.load(i)["sample_id"] for i in range(2)]
    assert ids == ["3/69148/400026", "2/44669/400012"]
    sample = dataset.load(0)
    assert sample["vertices_cam"].shape == (2, 0, 3)
    valid = sample["joint_valid"]
    assert valid.sum() == 42
    uv = sample["joints_2d"][valid]
    assert (uv > 0).all() and (uv < 256).all()
    assert 700 < sample["joints_cam"][..., 2].mean() < 1500


def _minimal_release(root, split="val"):
    """A hand-written one-frame set in the release's exact layout and key types."""
    (root / "annotations" / split).mkdir(parents=True)
    image_rel = "Capture9/0001_test/cam400001/image7.jpg"
    (root / "images" / split / "Capture9/0001_test/cam400001").mkdir(parents=True)
    Image.linear_gradient("L").resize((334, 512)).convert("RGB").save(root / "images" / split / image_rel)
    joints = np.zeros((42, 3))
    joints[:, 0] = np.linspace(-60, 60, 42)
    joints[:, 1] = np.tile(np.linspace(-40, 40, 21), 2)
    joints[:, 2] = 1000.0
    ann = root / "annotations" / split
    (ann / f"InterHand2.6M_{split}_data.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": image_rel, "width": 334, "height": 512, "capture": 9, "subject": 1,
                    "seq_name": "0001_test", "camera": "400001", "frame_idx": 7}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 10, 10], "joint_valid": [[1]] * 42,
                         "hand_type": "interacting", "hand_type_valid": 1}]}))
    (ann / f"InterHand2.6M_{split}_camera.json").write_text(json.dumps({"9": {
        "campos": {"400001": [0, 0, 0]}, "camrot": {"400001": np.eye(3).tolist()},
        "focal": {"400001": [1000.0, 1000.0]}, "princpt": {"400001": [167.0, 256.0]}}}))
    (ann / f"InterHand2.6M_{split}_joint_3d.json").write_text(json.dumps({"9": {"7": {
        "world_coord": joints.tolist(), "joint_valid": [[True]] * 42, "hand_type": "interacting", "hand_type_valid": True}}}))
    return root


def test_hand_written_release_record(tmp_path):
    dataset = InterHandDataset(_minimal_release(tmp_path / "ih"), "val")
    sample = dataset.load(0)
    # right hand is 0-20 in the release and index 1 here; left 21-41 is index 0
    np.testing.assert_allclose(sample["joints_cam"][1, :, 0], np.linspace(-60, 60, 42)[:21], atol=1e-5)
    np.testing.assert_allclose(sample["joints_cam"][0, :, 0], np.linspace(-60, 60, 42)[21:], atol=1e-5)
    batch = collate([sample, None])
    assert batch["dropped"] == 1 and batch["image"].shape == (1, 256, 256, 3)


def test_bad_inputs_name_the_file(tmp_path):
    root = _minimal_release(tmp_path / "ih")
    camera = root / "annotations/val/InterHand2.6M_val_camera.json"
    camera.write_text("{not json")
    with pytest.raises(UserError, match="camera.json: malformed JSON"):
        InterHandDataset(root, "val")
    camera.write_text(json.dumps({"8": {}}))
    with pytest.raises(UserError, match="capture 9 camera 400001 missing"):
        InterHandDataset(root, "val")
    with pytest.raises(UserError, match="no two-hand samples"):
        InterHandDataset(root, "val", strict=False)
    camera.unlink()
    with pytest.raises(UserError, match="missing InterHand2.6M_val_camera.json"):
        InterHandDataset(root, "val")
    with pytest.raises(UserError, match="unknown split"):
        InterHandDataset(root, "dev")
    with pytest.raises(UserError, match="data folder not found"):
        InterHandDataset(tmp_path / "nowhere")


def test_missing_and_non_rgb_images(tmp_path):
    root = _minimal_release(tmp_path / "ih")
    image = next((root / "images").rglob("*.jpg"))
    Image.new("L", (334, 512), 90).save(image)
    dataset = InterHandDataset(root, "val")
    with pytest.raises(SampleError, match="image mode is L"):
        dataset.load(0)
    assert InterHandDataset(root, "val", strict=False)[0] is None
    image.unlink()
    with pytest.raises(UserError, match="image missing"):
        InterHandDataset(root, "val")
    with pytest.raises(UserError, match=r"skipped 1 \(1 image missing\)"):
        InterHandDataset(root, "val", strict=False)


def test_mesh_annotations_with_a_null_hand_are_skipped(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    path = root / "annotations/test/InterHand2.6M_test_MANO_NeuralAnnot.json"
    mano = json.loads(path.read_text())
    first_capture = next(iter(mano))
    first_frame = next(iter(mano[first_capture]))
    mano[first_capture][first_frame]["left"] = None
    path.write_text(json.dumps(mano))
    dataset = InterHandDataset(root, "test", strict=False)
    assert len(dataset) == 7 and sum(dataset.skipped.values()) == 1


def _huge_png_header(path, width=20000, height=20000):
    """A 1x1 PNG whose header claims width x height (CRC fixed): what a decompression bomb looks like."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _edit_json(path, edit):
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


BAD_RECORDS = {  # probe cases (#21): what the edit does -> (file, edit, what the error says)
    "no capture": ("data", lambda d: d["images"][0].pop("capture"), "lacks 'capture'"),
    "no file_name": ("data", lambda d: d["images"][0].pop("file_name"), "lacks 'file_name'"),
    "no image id": ("data", lambda d: d["images"][0].pop("id"), "is not in 'images'"),
    "annotation a string": ("data", lambda d: d["annotations"].append("oops"), "an annotation is a str"),
    "camera a list": ("camera", lambda c: c.update({"9": [1, 2, 3]}), "camera 400001 missing"),
    "camrot 2x2": ("camera", lambda c: c["9"]["camrot"].update({"400001": [[1, 0], [0, 1]]}), "camrot: shape (2, 2), expected (3, 3)"),
    "focal NaN": ("camera", lambda c: c["9"]["focal"].update({"400001": [float("nan"), 1000.0]}), "non-finite"),
    "focal 0": ("camera", lambda c: c["9"]["focal"].update({"400001": [0.0, 1000.0]}), "is not positive"),
    "strings in world_coord": ("joint_3d", lambda j: j["9"]["7"]["world_coord"][0].__setitem__(0, "x"), "not an array of numbers"),
    "NaN in world_coord": ("joint_3d", lambda j: j["9"]["7"]["world_coord"][3].__setitem__(1, float("nan")), "non-finite"),
    "short joint_valid": ("data", lambda d: d["annotations"][0].update(joint_valid=[[1]] * 40), "joint_valid: shape (40,)"),
    "file_name outside": ("data", lambda d: d["images"][0].update(file_name="../../outside.jpg"), "leaves the image folder"),
    "file_name absolute": ("data", lambda d: d["images"][0].update(file_name="/etc/hostname"), "leaves the image folder"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_malformed_records_are_one_clear_error_or_a_counted_skip(tmp_path, case):
    root = _minimal_release(tmp_path / "ih")
    kind, edit, message = BAD_RECORDS[case]
    (tmp_path / "outside.jpg").write_bytes((next((root / "images").rglob("*.jpg"))).read_bytes())
    _edit_json(root / f"annotations/val/InterHand2.6M_val_{kind}.json", edit)
    if case == "annotation a string":  # the good record still reads; the string is one counted skip
        assert len(InterHandDataset(root, "val", strict=False).skipped) == 1
    with pytest.raises(UserError, match=re.escape(message)):
        InterHandDataset(root, "val")
    if case != "annotation a string":
        with pytest.raises(UserError, match=r"no two-hand samples in split 'val'; skipped 1 \("):
            InterHandDataset(root, "val", strict=False)


def test_bad_mano_fits_and_images_are_refused(synth_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    mano_path = root / "annotations/test/InterHand2.6M_test_MANO_NeuralAnnot.json"
    capture = next(iter(json.loads(mano_path.read_text())))
    frame = next(iter(json.loads(mano_path.read_text())[capture]))
    _edit_json(mano_path, lambda m: m[capture][frame]["right"].update(pose=[0.0] * 5))
    dataset = InterHandDataset(root, "test", strict=False)
    assert dict(dataset.skipped) == {"bad MANO pose": 1}
    with pytest.raises(UserError, match=re.escape("right pose: shape (5,), expected (48,)")):
        InterHandDataset(root, "test")
    _huge_png_header(dataset.records[1].image_path)
    Image.new("RGB", (256, 256)).save(dataset.records[2].image_path, "JPEG")  # all black: a broken camera
    assert [dataset[i] is None for i in range(4)] == [False, True, True, False]
    with pytest.raises(SampleError, match="more than this reader takes"):
        dataset.load(1)
    with pytest.raises(SampleError, match="one flat colour"):
        dataset.load(2)


def test_reader_takes_the_release_layout_right_hand_first(real_root):
    """The release stores the right hand in joints 0-20 and the left in 21-41: checked against the
    raw JSON with the camera applied here, not through the reader's own tables."""
    joints = json.loads((real_root / "test_interhand2.6m_joint_3d.json").read_text())
    cameras = json.loads((real_root / "test_interhand2.6m_camera.json").read_text())
    dataset = InterHandDataset(real_root, "test")
    for index in range(len(dataset)):
        sample = dataset.load(index, with_image=False)
        capture, frame, camera = sample["sample_id"].split("/")
        world = np.array(joints[capture][frame]["world_coord"], np.float64)
        rot, pos = (np.array(cameras[capture][key][camera], np.float64) for key in ("camrot", "campos"))
        in_camera = (world - pos) @ rot.T
        np.testing.assert_allclose(sample["joints_cam"][1], in_camera[:21], atol=1e-3)  # hand axis: 0 left, 1 right
        np.testing.assert_allclose(sample["joints_cam"][0], in_camera[21:], atol=1e-3)


def test_hand_model_joints_follow_the_interhand_order():
    """At rest (a flat hand), each finger's joints are listed tip first, so their distance to the
    wrist falls along the list; the wrist is last, and the fingertips lie across the hand in order."""
    from lagchand_edge.hand.joints import INTERHAND_JOINT_NAMES, WRIST

    assert INTERHAND_JOINT_NAMES[WRIST] == "wrist" and WRIST == 20
    for side, hand in load_hands().items():
        rest = hand.joint_regressor @ hand.template
        reach = np.linalg.norm(rest - rest[WRIST], axis=1)
        for finger in range(5):
            chain = reach[4 * finger : 4 * finger + 4]
            assert (np.diff(chain) < 0).all(), (side, finger, chain)
        across = rest[[4, 8, 12, 16], :] - rest[WRIST]  # index, middle, ring, pinky tips
        lateral = across @ np.linalg.svd(across - across.mean(0))[2][0]  # the tips' main direction of spread
        assert (np.diff(lateral) > 0).all() or (np.diff(lateral) < 0).all(), side


def test_parallel_rendering_writes_the_same_set_as_serial(tmp_path):
    from lagchand_edge.data.synth import write_dataset

    for workers in (1, 2):
        write_dataset(tmp_path / f"w{workers}", 4, seed=7, split="val", workers=workers)
    files = sorted(p.relative_to(tmp_path / "w1") for p in (tmp_path / "w1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "w2") for p in (tmp_path / "w2").rglob("*") if p.is_file())
    assert len(files) >= 4 + 3  # images and annotation files
    for name in files:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name


def test_skipped_records_are_described_alike_everywhere():
    from lagchand_edge.data.records import describe_skipped

    assert describe_skipped({}) == "skipped none"
    assert describe_skipped({"no valid joint": 1, "unreadable image": 2}) == "skipped 3 (2 unreadable image, 1 no valid joint)"
