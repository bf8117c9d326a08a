"""BM25 segments and the per-tenant manifest.

bm25s cannot add documents to a built index, so the BM25 side is a list of
immutable segments: each re-index writes one new segment holding the chunks of
changed files, and records the rows of replaced or deleted files as tombstones.
Segments hold at most `max_segment_rows` rows (a first index of a large source
writes several), so building or merging one never holds more than that in memory;
when segments pile up, small ones are merged, never past that cap. The manifest
(`manifest.json`, an `IndexManifest` artifact written atomically, last, by
`publish_manifest` only) names the live segments, tombstones, files and the vector
generation; a reader holding the previous manifest keeps working.

A segment directory holds `chunks.jsonl` (one chunk per row: id, source, path,
lines, symbol, text) and `bm25/` (the bm25s index over code-aware tokens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codetailor.artifacts import IndexManifest
from codetailor.atomic import staging_dir
from codetailor.home import TenantPaths

from retrieval.tokens import code_tokens


def manifest_path(paths: TenantPaths) -> Path:
    return paths.index_dir / "manifest.json"


def segments_dir(paths: TenantPaths) -> Path:
    return paths.index_dir / "segments"


def read_manifest(paths: TenantPaths) -> dict | None:
    """The published manifest as a plain dict (validated, migrated), or None before the first index."""
    m = IndexManifest.read_or_none(manifest_path(paths))
    return None if m is None else m.to_dict()


def publish_manifest(paths: TenantPaths, manifest: dict) -> None:
    """The one writer of the manifest: validate and atomically replace it (the publish point)."""
    IndexManifest.model_validate({**manifest, "schema_version": IndexManifest.SCHEMA_VERSION}).write(
        manifest_path(paths))


def indexed_files(paths: TenantPaths):
    """(source, path, content_sha) of every indexed file; nothing before the first index."""
    m = IndexManifest.read_or_none(manifest_path(paths))
    for source, files in (m.files if m else {}).items():
        for path, f in files.items():
            yield source, path, f.content_sha


def empty_manifest() -> dict:
    return IndexManifest().to_dict()


def iter_rows(directory: Path):
    """A segment's rows, one at a time (merges and embedding stream them)."""
    with open(directory / "chunks.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


class SegmentWriter:
    """Rows in, segments of at most `cap` rows out (one file's rows never split, so a file larger
    than the cap makes one larger segment). Each segment is staged then renamed into place;
    `written` lists (name, rows); names unreferenced by a published manifest are removed later.

    A full segment is written by a background thread while the next one fills (its BM25 build
    takes seconds on a large source, and the scan's worker processes would wait meanwhile): at
    most two segments are in memory. `finish` waits for every write and raises the first error;
    `abandon` waits and returns the names to remove."""

    def __init__(self, seg_root: Path, prefix: str, cap: int):
        self.seg_root, self.prefix, self.cap = seg_root, prefix, cap
        self.rows: list[dict] = []
        self.tokens: list[list[str] | None] = []
        self.written: list[tuple[str, int]] = []   # in name order, as each write is started
        self._writing = None   # the write in flight (a Future)
        self._pool = None

    @property
    def current(self) -> str:
        return f"{self.prefix}-{len(self.written):04d}"

    def add_file(self, rows: list[dict], tokens: list[list[str]] | None = None) -> tuple[str, list[int]]:
        """Place one file's rows (with their `row_tokens` when already worked out); returns
        (segment name, row numbers there)."""
        if self.rows and len(self.rows) + len(rows) > self.cap:
            self._start_write()
        start = len(self.rows)
        self.rows.extend(rows)
        self.tokens.extend(tokens if tokens is not None else [None] * len(rows))
        return self.current, list(range(start, start + len(rows)))

    def _start_write(self) -> None:
        self._wait()   # one write at a time: memory stays at two segments
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="segment-writer")
        name, rows, tokens = self.current, self.rows, self.tokens
        self.written.append((name, len(rows)))
        self.rows, self.tokens = [], []
        self._writing = self._pool.submit(self._write, name, rows, tokens)

    def _write(self, name: str, rows: list[dict], tokens: list) -> None:
        with staging_dir(self.seg_root / name) as tmp:
            write_segment(tmp, rows, tokens)

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def finish(self) -> None:
        """Write the last segment; return once every segment is in place."""
        try:
            if self.rows:
                self._start_write()
            self._wait()
        finally:
            self._close()

    def abandon(self) -> list[str]:
        """After a failure: wait for a write in flight; the names of every segment started."""
        try:
            self._wait()
        except Exception:
            pass
        finally:
            self._close()
        return [name for name, _ in self.written]

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def row_tokens(path: str, symbol: str | None, text: str) -> list[str]:
    """What BM25 indexes for a chunk: its path, symbol and text."""
    return code_tokens(f"{path} {symbol or ''} {text}")


def write_segment(target: Path, rows: list[dict], tokens: list[list[str] | None] | None = None) -> None:
    """Write rows (chunk dicts) and their BM25 index into the (staging) directory `target`.
    `tokens`: each row's `row_tokens` where already worked out (None: worked out here)."""
    import bm25s  # lazy: numba must not load before a vLLM engine in the same process

    with open(target / "chunks.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    retriever = bm25s.BM25()
    tokens = tokens or [None] * len(rows)
    retriever.index([t if t is not None else row_tokens(r["path"], r.get("symbol"), r["text"])
                     for r, t in zip(rows, tokens)], show_progress=False)
    retriever.save(str(target / "bm25"), show_progress=False)


@dataclass
class Segment:
    name: str
    rows: list[dict]
    bm25: object | None         # None once a search state has joined it into its Postings
    live: np.ndarray            # 1.0 for live rows, 0.0 for tombstoned ones
    rows_by_path: dict[str, list[int]]


def load_segment(directory: Path, tombstones: list[int]) -> Segment:
    import bm25s

    decode = json.JSONDecoder().raw_decode   # a third faster than json.loads per line; our lines have no padding
    with open(directory / "chunks.jsonl", encoding="utf-8") as f:
        rows = [decode(line)[0] for line in f]
    bm25 = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
    live = np.ones(len(rows), dtype=np.float32)
    if tombstones:
        live[np.asarray(tombstones, dtype=np.int64)] = 0.0
    by_path: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_path.setdefault(r["path"], []).append(i)
    return Segment(directory.name, rows, bm25, live, by_path)
