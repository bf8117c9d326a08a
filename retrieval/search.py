"""Search a tenant's index: BM25, semantic, or both fused by reciprocal rank fusion.

A search reads the published manifest (cached per process until the file
changes), so it never sees a half-written re-index. Vector hits are checked
against the manifest's live chunks, which also hides dead points between a
publish and their garbage collection.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Literal, Sequence


from codetailor.errors import CodetailorError, NotFound
from codetailor.home import TenantPaths

from retrieval.onnx_encoder import EncoderUnavailable
from retrieval.postings import Postings
from retrieval.segments import Segment, load_segment, manifest_path, read_manifest, segments_dir
from retrieval.tokens import code_tokens
from retrieval.vectors import VectorDimensionMismatch, VectorStoreUnavailable, open_store

log = logging.getLogger(__name__)
Mode = Literal["bm25", "semantic", "hybrid"]
MODES = ("bm25", "semantic", "hybrid")
degraded_searches = 0   # hybrid searches answered by BM25 alone because the vector store was down


class NotIndexed(NotFound):
    pass


@dataclass(frozen=True)
class Hit:
    path: str
    start_line: int
    end_line: int
    score: float
    text: str
    source: str = "main"
    symbol: str | None = None
    language: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "start_line": self.start_line, "end_line": self.end_line,
                "score": round(self.score, 6), "text": self.text}


@dataclass
class _State:
    stamp: tuple
    manifest: dict
    segments: list[Segment]
    by_id: dict[int, tuple[int, int]]   # live chunk id -> (segment index, row)
    postings: Postings                  # the segments' BM25 columns joined, for searching


_cache: dict[str, _State] = {}
_cache_lock = threading.Lock()


def _stamp(paths: TenantPaths):
    try:
        st = os.stat(manifest_path(paths))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_state(paths: TenantPaths) -> _State:
    for _ in range(3):  # an indexer may GC the segments of the manifest we just read: read again
        stamp = _stamp(paths)
        if stamp is None:
            raise NotIndexed(f"tenant {paths.tenant!r} has no index yet: run `codetailor index --tenant {paths.tenant} PATH`")
        cached = _cache.get(str(paths.index_dir))
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            manifest = read_manifest(paths)
            if manifest is None:
                continue
            if cached is not None and cached.manifest["generation"] == manifest["generation"] and \
                    cached.manifest["segments"] == manifest["segments"]:
                # the embedder republished the same generation (a shorter pending list):
                # segments and tombstones are unchanged, keep them loaded
                state = _State(stamp, manifest, cached.segments, cached.by_id, cached.postings)
                with _cache_lock:
                    _cache[str(paths.index_dir)] = state
                return state
            segs = [load_segment(segments_dir(paths) / s["name"], manifest["tombstones"].get(s["name"], []))
                    for s in manifest["segments"]]
        except FileNotFoundError:
            continue
        by_id = {}
        for si, seg in enumerate(segs):
            for ri, row in enumerate(seg.rows):
                if seg.live[ri]:
                    by_id[row["id"]] = (si, ri)
        postings = Postings(segs)
        # the joined table answers every query: the segments' own bm25s copies would only double memory
        segs = [replace(seg, bm25=None) for seg in segs]
        state = _State(stamp, manifest, segs, by_id, postings)
        with _cache_lock:
            _cache[str(paths.index_dir)] = state
        return state
    raise CodetailorError(f"index of tenant {paths.tenant!r} changed while loading; try again")


def vectors_pending(paths: TenantPaths) -> int:
    """Live chunks of the published index that have no vector yet (hybrid search ranks them by BM25)."""
    return len(load_state(paths).manifest["pending_ids"])


def forget(paths: TenantPaths) -> None:
    with _cache_lock:
        _cache.pop(str(paths.index_dir), None)


def _bm25(state: _State, query: str, n: int, exclude: Sequence[str]) -> list[tuple[int, float]]:
    return [(state.segments[si].rows[ri]["id"], score)
            for score, si, ri in state.postings.top(code_tokens(query), n, exclude)]


def _semantic(settings, paths: TenantPaths, state: _State, query: str, n: int,
              exclude: Sequence[str], vec=None) -> list[tuple[int, float]]:
    from retrieval.embed import embed

    cfg = settings.retrieval
    encoder, dim = state.manifest.get("encoder"), state.manifest.get("dim")
    if encoder is None or not dim:   # no vector written yet
        return []
    if vec is None:
        # the encoder that built the index's vectors, whatever retrieval.encoder says now
        vec = embed(settings, encoder, [query], threads=cfg.embed_threads)[0]
    store = open_store(settings, paths, dim)
    hits = store.search(vec, n + 8, state.manifest["generation"], exclude)
    return [(cid, s) for cid, s in hits if cid in state.by_id][:n]


def _rrf(lists: list[list[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranked in lists:
        for rank, (cid, _) in enumerate(ranked):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused.items(), key=lambda x: -x[1])


def search(settings, paths: TenantPaths, query: str, mode: Mode = "hybrid", top_k: int | None = None,
           exclude_paths: Sequence[str] = (), query_vector=None) -> list[Hit]:
    """The tenant's top-k chunks for `query`. `exclude_paths` drops chunks of those files.
    `query_vector`: the query's embedding when the caller already has it (batching, benchmarks)."""
    global degraded_searches
    if mode not in MODES:
        raise CodetailorError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    cfg = settings.retrieval
    k = cfg.top_k if top_k is None else top_k
    if k < 0:
        raise CodetailorError("top_k must be >= 0")
    if not query or not query.strip():
        raise CodetailorError("empty query")
    state = load_state(paths)
    if k == 0 or not state.by_id:
        return []
    exclude = tuple(exclude_paths)
    n = max(k, cfg.candidates) if mode == "hybrid" else k
    if mode == "bm25":
        ranked = _bm25(state, query, k, exclude)
    elif mode == "semantic":
        ranked = _semantic(settings, paths, state, query, k, exclude, query_vector)
    else:
        lexical = _bm25(state, query, n, exclude)
        try:
            semantic = _semantic(settings, paths, state, query, n, exclude, query_vector)
        except (VectorStoreUnavailable, VectorDimensionMismatch, EncoderUnavailable) as e:
            degraded_searches += 1
            log.warning("vectors unusable here, answering with BM25 only: %s", e)
            semantic = []
        ranked = _rrf([lexical, semantic], cfg.rrf_k)
    hits = []
    for cid, score in ranked[:k]:
        si, ri = state.by_id[cid]
        r = state.segments[si].rows[ri]
        hits.append(Hit(r["path"], r["start_line"], r["end_line"], score, r["text"], r["source"],
                        r.get("symbol"), r.get("language")))
    return hits


def query_from_file(text: str, line: int, window: int) -> str:
    """The editor's query: the `window` lines above the cursor line (1-based)."""
    lines = text.splitlines()
    if line < 1 or line > len(lines) + 1:
        raise CodetailorError(f"line {line} is outside the file (1..{len(lines) + 1})")
    return "\n".join(lines[max(0, line - 1 - window):line - 1])
