"""Atomic writes: a failed step never leaves something that looks like a finished output."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lagchand_edge.errors import UserError

#: Picture files the toolkit reads as photos (the predict app's sources, calibration folders).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@contextmanager
def single_writer(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on `target` for the block; a second run writing it is refused.

    The lock is a hidden `.NAME.lock` file beside `target`, removed when the block ends (the
    inode check after locking makes a lock file removed meanwhile by its holder not count).
    """
    lock_path = target.with_name(f".{target.name}.lock")
    while True:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{target} is being written by another run right now; wait for it "
                            "or choose another output") from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def atomic_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; rename it into place only if the block succeeds.

    An existing `target` is refused unless `force`, in which case it is replaced at the end; a
    second run writing the same `target` at the same time is refused, even with `force`.
    """
    target = Path(target)
    if target.exists() and not force:
        raise UserError(f"{target} already exists (use --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with single_writer(target), _staging_dir(target, force) as tmp:
        yield tmp


@contextmanager
def _staging_dir(target: Path, force: bool) -> Iterator[Path]:
    """The body of `atomic_dir`, run under its lock."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        if target.exists() and not force:  # another run wrote it meanwhile: keep theirs, say so
            raise UserError(f"{target} appeared while this ran (another run writing the same folder?); "
                            "nothing was replaced (use --force to replace it)")
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            tmp.rename(target)
            if backup.is_dir():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                backup.unlink(missing_ok=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_existing(path: Path, force: bool) -> None:
    """Stop before any work when an output exists and the user did not ask to replace it, or
    when it could not be written at all."""
    if Path(path).exists() and not force:
        raise UserError(f"{path} already exists (use --force to replace it)")
    check_writable(path)


def check_writable(path: Path) -> None:
    """Stop before any work when `path` cannot be created: a file where a folder must be, or a
    folder this process may not write (minutes of conversion would otherwise end in an error)."""
    path = Path(path).absolute()
    ancestor = next(p for p in path.parents if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"{path}: cannot be written, {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot be written, {ancestor} is not writable")


@contextmanager
def report_files(folder: Path, marker: str, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success move its files into `folder` (kept, not replaced).

    Reports share a folder (a drift report beside a profile makes the accuracy-vs-latency
    chart), so each command adds its own files; `marker` (its main file) must not exist unless `force`.
    """
    folder = Path(folder)
    refuse_existing(folder / marker, force)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with single_writer(folder / marker):
            tmp = Path(tempfile.mkdtemp(prefix=f".{marker}.", suffix=".partial", dir=folder))
            try:
                yield tmp
                for file in sorted(tmp.iterdir()):
                    file.chmod(0o644)
                    os.replace(file, folder / file.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if created and not any(folder.iterdir()):  # a failed run leaves no empty folder behind
            folder.rmdir()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temporary name and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors as `.safetensors`, atomically and byte-for-byte reproducibly.

    safetensors writes its `__metadata__` entries in a random order per process (a Rust hash
    map), so the same weights saved twice had different sha256 and looked like a new checkpoint
    to every check that compares hashes. The JSON header is written again with those entries
    sorted (tensor offsets count from the end of the header, padded to 8 bytes as the format asks).
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text = text.ljust(-(-len(text) // 8) * 8)
    atomic_write_bytes(path, len(text).to_bytes(8, "little") + text + data[8 + length:])


def update_digest(digest: hashlib._Hash, path: Path) -> None:
    """Feed a file's bytes to a running hash, a megabyte at a time."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()
