"""Atomic writes: a reader sees the old content or the new, never a mix.

Files are written to a temporary sibling, fsynced, then renamed over the target
(rename is atomic within one filesystem). Directories are built under a
temporary name and renamed into place; a manifest naming the live version is
written last, so a crash at any point leaves the previous state readable.

Everything under the home is a tenant's code, a model trained on it, or a secret, and
the machine may have other local users: files are owner-only (0600) and directories
0700 unless a caller asks otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as owner-only directories; an existing
    directory keeps its mode (the caller may have chosen it)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            d.mkdir(mode=DIR_MODE)
            os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, obj: Any, mode: int = FILE_MODE) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (model files run to gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; on success rename it to `final`.

    `final` must not exist yet (versions are immutable). On any failure the
    temporary directory is removed and `final` is untouched.
    """
    final = Path(final)
    private_dir(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, DIR_MODE)
    try:
        yield tmp
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_partials(parent: Path) -> int:
    """Remove leftovers of killed writers (`.name.*.partial` / `.tmp`). Returns how many."""
    n = 0
    if not Path(parent).is_dir():
        return 0
    for p in Path(parent).iterdir():
        if p.name.startswith(".") and (p.name.endswith(".partial") or p.name.endswith(".tmp")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def exclusive(lock_file: Path, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file` (created 0600) for the block, or raise
    `busy()` at once when another process holds it. The kernel drops it when a holder dies,
    so a killed run never leaves a stale lock behind."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield
    finally:
        os.close(fd)
