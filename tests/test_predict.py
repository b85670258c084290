"""`predict` and its torch-free app: photos, folders, videos, box files, bad input, every artifact type."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import assert_user_error, run_cli

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(synth_root, tmp_path_factory):
    """Three synthetic renders as a user's photos (JPEG and PNG), with the boxes around their hands."""
    folder = tmp_path_factory.mktemp("photos")
    data = json.loads((synth_root / "annotations/test/InterHand2.6M_test_data.json").read_text())
    boxes = {}
    for image, ann in list(zip(data["images"], data["annotations"], strict=True))[:3]:
        name = f"photo{image['id']}" + (".png" if image["id"] % 2 else ".jpg")
        Image.open(synth_root / "images/test" / image["file_name"]).save(folder / name)
        boxes[name] = ann["bbox"]
    return folder, boxes


def runner_crop_and_joints(artifact, image: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """What the pipeline should see and report, computed with the library alone: the crop (NCHW in
    [0, 1]) and the frame joints (2, 21, 2): crop, run, project, map back."""
    from apps.predict.hands import square_crop
    from lagchand_edge.artifact import load_runner
    from lagchand_edge.data.transforms import crop_image, crop_to_image

    square = square_crop(box)
    crop = np.asarray(crop_image(Image.fromarray(image), square, 256), dtype=np.float32).transpose(2, 0, 1)[None] / 255
    joints_crop, _ = load_runner(artifact)(crop).project(256)
    return crop, crop_to_image(joints_crop[0], square, 256)


@pytest.mark.parametrize("target", ["executorch", "tflite", "coreml"])
def test_predict_on_photos_with_a_box_file_matches_the_runner(target, fp32_artifacts, photos, tmp_path):
    folder, boxes = photos
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    result = run_cli("predict", str(folder), "--artifact", str(fp32_artifacts[target].path), "--boxes", str(box_file), "--out", str(out),
                     "--sheet", str(tmp_path / "sheet.png"), "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 3 and summary["failed"] == 0 and set(summary["ms_per_frame"]) == {"find", "infer", "draw"}
    assert summary["threads"] == 1  # one thread computes what the runtime's default threads compute (below)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for record in records:
        image = np.asarray(Image.open(folder / record["name"]).convert("RGB"))
        _, want = runner_crop_and_joints(fp32_artifacts[target].path, image, boxes[record["name"]])
        got = np.array([record["left"]["joints_image"], record["right"]["joints_image"]])
        np.testing.assert_allclose(got, want, atol=0.02)  # JSON keeps 2 decimals
        assert len(record["right"]["vertices_image"]) == 780 and len(record["crop_square"]) == 3
        assert (out / (record["name"].rsplit(".", 1)[0] + ".png")).is_file()
    assert Image.open(tmp_path / "sheet.png").size == (6 * 256, 256)  # three pairs in one row


def test_the_app_runs_without_torch(fp32_artifacts, photos, tmp_path):
    folder, boxes = photos
    name, box = next(iter(boxes.items()))
    code = ("import sys; sys.modules['torch'] = None; from apps.predict.__main__ import main; "
            f"sys.exit(main([{str(folder / name)!r}, '--artifact', {str(fp32_artifacts['tflite'].path)!r}, "
            f"'--box', '{','.join(map(str, box))}', '--out', {str(tmp_path / 'app')!r}, '--threads', '2']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 1 and summary["failed"] == 0 and summary["fps"] > 0
    record = json.loads((tmp_path / "app/predictions.jsonl").read_text())
    image = np.asarray(Image.open(folder / name).convert("RGB"))
    _, want = runner_crop_and_joints(fp32_artifacts["tflite"].path, image, box)
    np.testing.assert_allclose(np.array([record["left"]["joints_image"], record["right"]["joints_image"]]), want, atol=0.02)


def _video_frames(photos, count=6):
    folder, _ = photos
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    frames = [Image.fromarray(np.pad(images[i % len(images)], ((112, 112), (192, 192), (0, 0)))) for i in range(count)]  # 480x640
    return frames


def test_predict_on_a_gif_and_an_mp4(fp32_artifacts, photos, tmp_path):
    frames = _video_frames(photos)
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    box = "150,70,340,340"
    out = tmp_path / "gif"
    result = run_cli("predict", str(gif), "--artifact", str(fp32_artifacts["tflite"].path), "--box", box, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 6 and len((out / "predictions.jsonl").read_text().splitlines()) == 6
    cv2 = pytest.importorskip("cv2")
    mp4 = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frames[0].size)
    for frame in frames:
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()
    result = run_cli("predict", str(mp4), "--artifact", str(fp32_artifacts["tflite"].path), "--box", box, "--out", str(tmp_path / "mp4"),
                     "--max-frames", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 4
    capture = cv2.VideoCapture(str(tmp_path / "mp4/predicted.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640


def test_bad_input_is_one_line_and_the_other_frames_carry_on(fp32_artifacts, photos, tmp_path):
    folder, _ = photos
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    (mixed / "broken.jpg").write_bytes(b"not a picture")
    artifact = str(fp32_artifacts["tflite"].path)
    result = run_cli("predict", str(mixed), "--artifact", artifact, "--out", str(tmp_path / "o1"), "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr  # a frame failed: exit 1, not a crash
    summary = json.loads(result.stdout)
    assert summary["frames"] == 4 and summary["failed"] == 1 and "broken.jpg: cannot read image" in result.stderr
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_user_error(run_cli("predict", str(empty), "--artifact", artifact, "--out", str(tmp_path / "o2")), "empty file")
    assert_user_error(run_cli("predict", "7", "--artifact", artifact, "--out", str(tmp_path / "o3")), "camera 7")
    assert_user_error(run_cli("predict", str(folder), "--box", "1,2,3", "--artifact", artifact, "--out", str(tmp_path / "o4")), "x,y,w,h")
    assert_user_error(run_cli("predict", str(tmp_path / "nowhere.jpg"), "--out", str(tmp_path / "o5")), "not found")
    assert_user_error(run_cli("predict", str(folder), "--threads", "0", "--artifact", artifact, "--out", str(tmp_path / "o6")), "--threads")
    assert not any((tmp_path / f"o{i}").exists() for i in range(2, 7))  # nothing written for a refused command


def test_palm_detector_decoding_anchors_nms_and_hand_box():
    from apps.predict.detector import INPUT, Palm, anchors, both_hands, decode, hand_box, weighted_nms

    centres = anchors()
    assert centres.shape == (2016, 2)
    np.testing.assert_allclose(centres[0], [0.5 / 24, 0.5 / 24])  # first cell of the stride-8 grid, two anchors each
    np.testing.assert_allclose(centres[2], [1.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(centres[1152], [0.5 / 12, 0.5 / 12])  # stride 16 starts after 24 * 24 * 2 anchors
    raw = np.zeros((2016, 18), np.float32)
    raw[:, 2:4] = 40.0  # 40-pixel palms
    scores = np.full(2016, -10.0)
    scores[[600, 601]] = [3.0, 2.0]  # two overlapping detections at one cell (anchors 600 and 601 share a centre)
    scores[1500] = 1.0
    found = weighted_nms(*decode(raw, scores, centres))
    assert len(found) == 2 and found[0][0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    np.testing.assert_allclose(found[0][1][:2], centres[600] - 20 / INPUT, atol=1e-6)
    palm = Palm(0.9, np.array([100.0, 100.0, 140.0, 140.0]), np.zeros((7, 2)))
    palm.keypoints[0], palm.keypoints[2] = (120, 140), (120, 100)  # wrist below, middle MCP above: fingers up
    box = hand_box(palm)
    np.testing.assert_allclose(box, [80.0, 60.0, 160.0, 140.0])  # 2 palm sizes, moved half a palm towards the fingers
    assert both_hands([]) is None and both_hands([palm]) == pytest.approx((80.0, 60.0, 80.0, 80.0))
