"""Deliberate bugs the fast suite must catch: a check of the tests themselves, run on demand (not in CI).

    .venv/bin/python tests/mutation_check.py                       # every mutation, the whole fast suite
    .venv/bin/python tests/mutation_check.py --only bgr-runtime -- tests/test_convert.py

Each mutation replaces one line in a copy of the tree (the working tree is never touched), runs
the fast suite there (`-m "not slow" -x`: it stops at the first failing test) and reports whether
a test failed, and which. An unchanged copy runs first, as the control: it must pass. A mutation that no test catches is a hole in the suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str


MUTATIONS = (
    Mutation("bgr-runtime", "lagchand_edge/artifact.py",  # every artifact fed BGR
             "self.backend.run([images[i : i + 1]])", "self.backend.run([np.ascontiguousarray(images[i : i + 1, ::-1])])"),
    Mutation("bgr-pipeline", "lagchand_edge/data/transforms.py",  # images decoded to BGR before the model
             "torch.as_tensor(images).permute(0, 3, 1, 2)", "torch.as_tensor(images).flip(-1).permute(0, 3, 1, 2)"),
    Mutation("no-normalisation", "lagchand_edge/model/lagchand.py",
             "x = (image - self.mean) / self.std", "x = image"),
    Mutation("swapped-hands", "lagchand_edge/hand/joints.py",  # the release's right hand read as the left
             'RELEASE_SLICES: dict[str, slice] = {"right": slice(0, 21), "left": slice(21, 42)}',
             'RELEASE_SLICES: dict[str, slice] = {"right": slice(21, 42), "left": slice(0, 21)}'),
    Mutation("joint-order", "lagchand_edge/hand/joints.py",  # the thumb listed base first
             "16, 15, 14, 13,  # thumb tip..thumb1", "13, 14, 15, 16,  # thumb tip..thumb1"),
    Mutation("skipped-dequantize", "converters/tflite.py",  # int8 outputs handed back as raw codes
             "value = (value.astype(np.float32) - zero) * scale", "value = value.astype(np.float32)"),
    Mutation("off-by-one-crop", "lagchand_edge/data/transforms.py",
             "(scale, 0, x0, 0, scale, y0)", "(scale, 0, x0 + 1, 0, scale, y0 + 1)"),
)


def _copy_tree(into: Path) -> Path:
    """The tracked and untracked (not ignored) files of the repository, with ../shared beside them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    copy = into / REPO.name
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    if (REPO.parent / "shared").exists():
        (into / "shared").symlink_to(REPO.parent / "shared")
    return copy


CONTROL = Mutation("control (no bug)", "", "", "")  # the same run on an unchanged copy: it must pass


def _apply(copy: Path, mutation: Mutation) -> None:
    if mutation is CONTROL:
        return
    path = copy / mutation.file
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the line to mutate is not in {mutation.file} exactly once; update this script")
    path.write_text(text.replace(mutation.old, mutation.new))


def run(mutation: Mutation, pytest_args: list[str]) -> tuple[bool, str, float]:
    """(caught, the first failing test or the summary, seconds) for one mutation."""
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as tmp:
        copy = _copy_tree(Path(tmp))
        _apply(copy, mutation)
        env = {**os.environ, "PYTHONPATH": str(copy)}  # the copy's packages, not the editable install's
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider", *pytest_args],
                              cwd=copy, env=env, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        return done.returncode != 0, (failed[0] if failed else lines[-1] if lines else done.stderr[-300:]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[m.name for m in MUTATIONS], help="run only these mutations")
    parser.add_argument("pytest_args", nargs="*", help="after --: test paths or options for pytest (default: the whole fast suite)")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    failed, detail, seconds = run(CONTROL, args.pytest_args)
    print(f"{'FAILED' if failed else 'passed':7} {CONTROL.name:20} {seconds:6.0f} s  {detail}", flush=True)
    if failed:
        sys.exit("the unchanged copy fails: fix the suite before judging it")
    missed = []
    for mutation in chosen:
        caught, detail, seconds = run(mutation, args.pytest_args)
        print(f"{'caught' if caught else 'MISSED':7} {mutation.name:20} {seconds:6.0f} s  {detail}", flush=True)
        if not caught:
            missed.append(mutation.name)
    print(f"{len(chosen) - len(missed)} of {len(chosen)} mutations caught" + (f"; missed: {', '.join(missed)}" if missed else ""))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
