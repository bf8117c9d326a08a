"""The train / held-out split of a tenant's files: one function, one key.

Training holds the held-out files out of its examples and records the split in
the adapter's meta; evaluation measures on those files, and before any training
draws the same split itself, so base and rag numbers measured first are on the
files the first training run will hold out. The key is the file's path as
retrieval names it (relative to its source root), the same in both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from codetailor.artifacts import SplitRecord


def _draw(seed: int, path: str) -> float:
    h = hashlib.sha256(f"{seed}:{path}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


@dataclass(frozen=True)
class Split:
    seed: int
    fraction: float
    train: tuple[str, ...]
    heldout: tuple[str, ...]

    def record(self) -> SplitRecord:
        return SplitRecord(seed=self.seed, heldout_fraction=self.fraction, by="file",
                           train_files=len(self.train), heldout_files=self.heldout)

    def to_dict(self) -> dict:
        return self.record().model_dump(mode="json")


def split_files(paths: Sequence[str], seed: int, fraction: float) -> Split:
    """Held-out vs train by file path. A file's side depends only on (seed, its path), so it
    stays put when other files come and go; with two or more files each side gets one."""
    paths = sorted(set(paths))
    draw = {p: _draw(seed, p) for p in paths}
    heldout = {p for p in paths if draw[p] < fraction}
    if len(paths) >= 2:
        ranked = sorted(paths, key=lambda p: draw[p])
        if not heldout:
            heldout = {ranked[0]}
        if len(heldout) == len(paths):
            heldout.discard(ranked[-1])
    return Split(seed, fraction, tuple(p for p in paths if p not in heldout), tuple(p for p in paths if p in heldout))
