"""Replay of issue #21's probe: every bad input it listed, through the real command line, run on
demand (not in CI: about 60 commands in fresh processes).

    .venv/bin/python tests/probe_replay.py               # every case, a table, exit 1 if one misbehaves
    .venv/bin/python tests/probe_replay.py --only nan    # the cases whose name contains 'nan'

Each case mutates a copy of a small synthetic set, an artifact or a MANO fit the way a careless
or hostile user would, runs one `lagchand-edge` command on it in a fresh process and checks the
README's promise: the documented exit code (2 for a user mistake, 1 for a failed gate or an
ERROR row, 0 when the bad record is skipped and counted), one line on stderr for a mistake, no
traceback anywhere, no file written outside the command's own output, and where a record is
skipped, the skip said on the console. The regression tests of `tests/` cover the same ground
piece by piece; this is the end-to-end view of a user meeting them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lagchand_edge"]
TINY = REPO / "tests" / "assets" / "tiny_trained.safetensors"
SPLIT = "test"


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Path], list[str]]  # the command, given the case's own folder (it holds `set/` and may hold more)
    exit: int
    says: str  # a fragment the console must show (stderr for exit 2, stdout+stderr otherwise)
    mutate: Callable[[Path], None] | None = None  # applied to the case's folder before the command runs
    artifact: str | None = None  # copy this prepared artifact into the case folder as `art/`


# ---------------------------------------------------------------- mutations of the synthetic set


def _kind(folder: Path, kind: str) -> Path:
    return folder / "set" / "annotations" / SPLIT / f"InterHand2.6M_{SPLIT}_{kind}.json"


def edit_json(kind: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        path = _kind(folder, kind)
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return mutate


def first_image(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return edit_json("data", lambda d: change(d["images"][0]))


def first_annotation(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return edit_json("data", lambda d: change(d["annotations"][0]))


def first_camera(field: str, value) -> Callable[[Path], None]:
    def edit(d: dict) -> None:
        capture = next(iter(d.values()))
        camera = next(iter(capture[field]))
        capture[field][camera] = value
    return edit_json("camera", edit)


def first_frame(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(d: dict) -> None:
        capture = d[min(d, key=int)]
        change(capture[min(capture, key=int)])
    return edit_json("joint_3d", edit)


def first_mano(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(d: dict) -> None:
        capture = d[min(d, key=int)]
        change(capture[min(capture, key=int)])
    return edit_json("MANO_NeuralAnnot", edit)


def image_bytes(data: bytes) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        first = sorted((folder / "set" / "images").rglob("*.jpg"))[0]
        first.write_bytes(data)
    return mutate


def huge_png_header(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG signature and IHDR claiming width x height (no pixel data): a decompression bomb's header."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")


def set_field(key: str, value) -> Callable[[dict], None]:
    def change(record: dict) -> None:
        record[key] = value
    return change


def drop_field(key: str) -> Callable[[dict], None]:
    def change(record: dict) -> None:
        record.pop(key)
    return change


def mark_outside(folder: Path) -> None:
    """A file just outside the set that an escaping `file_name` would reach."""
    shutil.copy(sorted((folder / "set" / "images").rglob("*.jpg"))[0], folder / "outside.jpg")


# ---------------------------------------------------------------- mutations of an artifact


def edit_manifest(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        path = folder / "art" / "manifest.json"
        manifest = json.loads(path.read_text())
        result = change(manifest)
        path.write_text(json.dumps(manifest if result is None else result))
    return mutate


def corrupt_coreml_model(folder: Path) -> None:
    """A corrupt CoreML spec whose manifest sha256 is recomputed to match: only loading can tell."""
    from lagchand_edge.artifact import path_sha256

    art = folder / "art"
    spec = next(art.rglob("model.mlmodel"))
    spec.write_bytes(b"\x08\x07garbage" * 64)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["sha256"] = path_sha256(art / manifest["file"])
    (art / "manifest.json").write_text(json.dumps(manifest))


def outside_model(folder: Path) -> None:
    (folder / "other").mkdir()
    shutil.copy(folder / "art" / "model.tflite", folder / "other" / "model.tflite")
    edit_manifest(set_field("file", "../other/model.tflite"))(folder)


def file_in_the_way(folder: Path) -> None:
    """`ro` is a file, so nothing can be written under it (a read-only folder would not stop root)."""
    (folder / "ro").write_text("a file where a folder must be")


def as_train_split(folder: Path) -> None:
    """The set's one split renamed to train (what `train` reads)."""
    root = folder / "set"
    (root / "images" / SPLIT).rename(root / "images" / "train")
    (root / "annotations" / SPLIT).rename(root / "annotations" / "train")
    for path in (root / "annotations" / "train").iterdir():
        path.rename(path.with_name(path.name.replace(f"_{SPLIT}_", "_train_")))


def evil_mano(shape: tuple[int, int]) -> Callable[[Path], None]:
    """MANO_RIGHT/LEFT.pkl whose joint regressor (a scipy sparse matrix, as in MANO's files) declares `shape`."""
    def mutate(folder: Path) -> None:
        import pickle

        import numpy as np
        import scipy.sparse

        regressor = scipy.sparse.csc_matrix(np.eye(16, 778))
        regressor._shape = shape  # what a hostile file declares; the index arrays stay small
        fit = {"J_regressor": regressor, "v_template": np.zeros((778, 3)), "weights": np.zeros((778, 16)),
               "f": np.zeros((1538, 3), np.uint32), "shapedirs": np.zeros((778, 3, 10))}
        (folder / "mano").mkdir()
        for side in ("RIGHT", "LEFT"):
            (folder / "mano" / f"MANO_{side}.pkl").write_bytes(pickle.dumps(fit, protocol=2))
        (folder / "set" / "dataset.json").unlink()  # no card naming the procedural hand: the set's meshes are MANO's
    return mutate


def unreadable_model_rehashed(folder: Path) -> None:
    """A model file that is no model, with the manifest's sha256 recomputed (as a user who re-saved it would)."""
    from lagchand_edge.io import file_sha256

    art = folder / "art"
    (art / "model.tflite").write_bytes(b"not a flatbuffer" * 64)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["sha256"] = file_sha256(art / "model.tflite")
    (art / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- the cases


def data(folder: Path) -> str:
    return str(folder / "set")


def drift(folder: Path, *options: str, out: str = "d", artifacts: tuple[str, ...] = ("art",)) -> list[str]:
    """`drift` of the case's artifacts on its set, against the tiny checkpoint they were converted from."""
    return ["drift", *(str(folder / a) for a in artifacts), "--checkpoint", str(TINY), "--data", data(folder), "--split", SPLIT,
            *options, "--out", str(folder / out)]


def lenient(tag: str, mutate: Callable[[Path], None], says: str = "skipped") -> list[Case]:
    """A bad record through every reading command: skipped and counted, the run goes on (exit 0)."""
    return [
        Case(f"{tag} / data summary", lambda f: ["data", "summary", data(f), "--split", SPLIT, "--check-images"], 0, says, mutate),
        Case(f"{tag} / evaluate", lambda f: ["evaluate", "--data", data(f), "--split", SPLIT, "--checkpoint", str(TINY)], 0, says, mutate),
        Case(f"{tag} / drift", lambda f: drift(f, out="drift"), 0, says,
             mutate, artifact="tflite-fp32"),
        Case(f"{tag} / convert --calib-data", lambda f: ["convert", "--target", "tflite", "--precision", "fp32", "--checkpoint", str(TINY),
                                                         "--calib-data", data(f), "--out", str(f / "out")], 0, "", mutate),
    ]


def cases() -> list[Case]:
    found: list[Case] = []
    # 1. manifests: a refusal before any work (profile), an ERROR row that names it (drift, which checks the others)
    for tag, change in (("schema_version as text", set_field("schema_version", "2")), ("schema_version null", set_field("schema_version", None)),
                        ("manifest a list", lambda m: [m]), ("no target", drop_field("target")), ("source null", set_field("source", None)),
                        ("file /etc/passwd", set_field("file", "/etc/passwd"))):
        found.append(Case(f"manifest: {tag} / drift", drift,
                          1, "manifest", edit_manifest(change), "tflite-fp32"))
        found.append(Case(f"manifest: {tag} / profile", lambda f: ["profile", str(f / "art"), "--runs", "2", "--warmup", "1", "--out", str(f / "p")],
                          2, "manifest", edit_manifest(change), "tflite-fp32"))
    found.append(Case("manifest: file ../other/model.tflite / drift", drift, 1, "inside", outside_model, "tflite-fp32"))
    # 2. one corrupt artifact among good ones: an ERROR row, the others still checked (exit 1)
    found.append(Case("corrupt CoreML model, matching sha256 / drift", lambda f: drift(f, artifacts=("art", "good")), 1, "ERROR",
                      lambda f: (corrupt_coreml_model(f), shutil.copytree(PREPARED / "tflite-fp32", f / "good")), "coreml-fp32"))
    # 3. malformed annotations
    for tag, mutate in (("no capture", first_image(drop_field("capture"))), ("no file_name", first_image(drop_field("file_name"))),
                        ("no id", first_image(drop_field("id"))),
                        ("annotation a string", edit_json("data", lambda d: d["annotations"].__setitem__(0, "oops"))),
                        ("camera a list", edit_json("camera", lambda d: d.update({next(iter(d)): [1, 2, 3]}))),
                        ("strings in world_coord", first_frame(lambda r: r["world_coord"][0].__setitem__(0, "x"))),
                        ("short joint_valid", first_annotation(lambda a: a.__setitem__("joint_valid", a["joint_valid"][:5]))),
                        ("5-value MANO pose", first_mano(lambda r: r["right"].__setitem__("pose", [0.0] * 5))),
                        ("2x2 camrot", first_camera("camrot", [[1, 0], [0, 1]]))):
        found += lenient(f"annotation: {tag}", mutate)
    # 4. non-finite numbers
    found += lenient("NaN joint coordinates", first_frame(lambda r: r["world_coord"][3].__setitem__(0, float("nan"))))
    found += lenient("NaN focal length", first_camera("focal", [float("nan"), float("nan")]))
    found += lenient("inf focal length", first_camera("focal", [float("inf"), 500.0]))
    for gate in ("nan", "-1", "inf"):
        found.append(Case(f"gate --max-mpjpe-drift {gate}", lambda f, g=gate: drift(f, "--max-mpjpe-drift", g), 2, "finite", None, "tflite-fp32"))
    # 5. images
    found += lenient("20000x20000 PNG header", image_bytes(huge_png_header()))
    found += lenient("zero-byte JPEG", image_bytes(b""))
    found += lenient("file_name ../../../../outside.jpg",
                     lambda f: (mark_outside(f), first_image(set_field("file_name", "../../../../outside.jpg"))(f)))
    found += lenient("absolute file_name", lambda f: (mark_outside(f), first_image(set_field("file_name", str(f / "outside.jpg")))(f)))
    # 6. outputs
    for command in (lambda f: ["convert", "--target", "tflite", "--checkpoint", str(TINY), "--out", str(f / "ro" / "a")],
                    lambda f: ["data", "synth", "--num", "2", "--out", str(f / "ro" / "s")],
                    lambda f: ["data", "show", data(f), "--index", "0", "--split", SPLIT, "--out", str(f / "ro" / "x.png")],
                    lambda f: ["train", "--data", data(f), "--config", "tiny", "--out", str(f / "ro" / "c.safetensors")],
                    lambda f: ["profile", str(f / "art"), "--runs", "2", "--out", str(f / "ro" / "p")],
                    lambda f: drift(f, out="ro/d")):
        name = " ".join(word for word in command(Path("F"))[:2] if not word.startswith("F"))
        found.append(Case(f"unwritable --out / {name}", command, 2, "ro", file_in_the_way, "tflite-fp32"))
    found.append(Case("data show --out without .png", lambda f: ["data", "show", data(f), "--index", "0", "--split", SPLIT, "--out", str(f / "x")],
                      2, "--out"))
    found.append(Case("data show --out a folder", lambda f: ["data", "show", data(f), "--index", "0", "--split", SPLIT, "--out", str(f / "set")],
                      2, "--out"))
    found.append(Case("profile whose only artifact is an ERROR row", lambda f: ["profile", str(f / "art"), "--runs", "2", "--out", str(f / "p")],
                      1, "ERROR", unreadable_model_rehashed, "tflite-fp32"))
    # 7. options
    for size in ("0", "-5"):
        found.append(Case(f"data synth --size {size}", lambda f, s=size: ["data", "synth", "--num", "2", "--size", s, "--out", str(f / "s")],
                          2, "--size"))
    for num in ("0", "-1"):
        found.append(Case(f"evaluate --num {num}", lambda f, n=num: ["evaluate", "--data", data(f), "--split", SPLIT, "--num", n], 2, "--num"))
    found.append(Case("train on a set smaller than the batch", lambda f: ["train", "--data", data(f), "--config", "tiny", "--batch-size", "64",
                                                                         "--out", str(f / "c.safetensors")], 2, "batch", as_train_split))
    # 8. MANO
    for shape, says in (((10**9, 10**9), "far larger"), ((-3, 4), "non-negative")):
        found.append(Case(f"MANO sparse shape {shape}", lambda f: ["data", "show", data(f), "--index", "0", "--split", SPLIT, "--mano-dir",
                                                                  str(f / "mano"), "--out", str(f / "x.png")], 2, says, evil_mano(shape)))
    return found


# ---------------------------------------------------------------- running


PREPARED = Path(tempfile.gettempdir())  # set by prepare(): the clean inputs


def prepare(work: Path) -> None:
    """The clean inputs every case copies: 6 synthetic samples, a tiny fp32 LiteRT and CoreML artifact."""
    global PREPARED
    PREPARED = work / "prepared"
    subprocess.run([*CLI, "data", "synth", "--num", "6", "--split", SPLIT, "--out", str(PREPARED / "set")], check=True, capture_output=True)
    for target in ("tflite", "coreml"):
        subprocess.run([*CLI, "convert", "--target", target, "--precision", "fp32", "--checkpoint", str(TINY), "--calib-num", "2",
                        "--out", str(PREPARED)], check=True, capture_output=True)


def replay(case: Case, work: Path) -> tuple[bool, str]:
    folder = work / "cases" / case.name.replace("/", "_").replace(" ", "_")
    shutil.copytree(PREPARED / "set", folder / "set")
    if case.artifact:
        shutil.copytree(PREPARED / case.artifact, folder / "art")
    if case.mutate:
        case.mutate(folder)
    before = {p for p in folder.rglob("*")}
    cwd = folder / "cwd"
    cwd.mkdir()
    result = subprocess.run([*CLI, *case.args(folder)], capture_output=True, text=True, cwd=cwd, timeout=600)
    console = result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    problems = []
    if result.returncode != case.exit:
        problems.append(f"exit {result.returncode}, expected {case.exit}")
    if "Traceback" in console:
        problems.append("traceback")
    if case.exit == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if case.says and case.says not in (result.stderr if case.exit == 2 else console):
        problems.append(f"does not say {case.says!r}")
    if case.says == "skipped" and "skipped none" in console:
        problems.append("skipped nothing: the bad record passed as a good one")
    outputs = {"d", "p", "drift", "out", "s", "c.safetensors", "x.png", "ro", "cwd"}
    strays = sorted(str(p.relative_to(folder)) for p in set(folder.rglob("*")) - before
                    if p.relative_to(folder).parts[0] not in outputs or (p.parent == cwd))
    if strays:
        problems.append(f"wrote outside its output: {strays[:3]}")
    said = (lines[-1] if lines else result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "")[:110]
    return not problems, ("ok" if not problems else "; ".join(problems)) + f" | {said}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="replay only the cases whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probe-replay-"))
    try:
        prepare(work)
        chosen = [c for c in cases() if not options.only or options.only in c.name]
        failed = 0
        for case in chosen:
            ok, detail = replay(case, work)
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'}  {case.name:<58} exit {case.exit}  {detail}", flush=True)
        print(f"{len(chosen)} cases, {failed} misbehaved (exit code, traceback, stderr lines, stray files)")
        return 1 if failed else 0
    finally:
        if options.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
