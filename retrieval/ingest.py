"""Index one named source of a tenant, incrementally.

1. Select files (selection.py) and compare each file's hash (content and
   chunking parameters) with the manifest: unchanged files keep their rows.
2. Chunk changed and new files; write one new BM25 segment (staged, renamed).
3. Embed only chunks whose id is not live yet (the id hashes source, path and
   text, so a function that moved lines keeps its vector); upsert them tagged
   with the new generation, which searches ignore until it is published.
4. Tombstone rows of changed and deleted files of *this* source; merge segments
   when they pile up.
5. Publish the manifest atomically, then garbage-collect vectors of dead chunks
   and unreferenced segments. A crash before publish leaves the previous index
   live; the next run deletes the unpublished generation's points.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

from codetailor.atomic import atomic_write_json, remove_stale_partials, staging_dir
from codetailor.errors import CodetailorError
from codetailor.home import TenantPaths
from codetailor.names import SourceName
from codetailor.tenants import registry_from_settings

from retrieval.embed import dimension, embed, embedding_text
from retrieval.segments import empty_manifest, manifest_path, read_manifest, segments_dir, write_segment
from retrieval.selection import Selection, chunk_params, file_chunks, select_files
from retrieval.symbol_table import update_symbols
from retrieval.vectors import VecPoint, open_store


class IndexBusy(CodetailorError):
    exit_code = 9


class NothingToIndex(CodetailorError):
    pass


@contextlib.contextmanager
def _tenant_lock(paths: TenantPaths):
    paths.index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.index_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(f"tenant {paths.tenant!r} is being indexed by another process") from None
        yield
    finally:
        os.close(fd)


def chunk_id(source: str, path: str, text: str, occurrence: int) -> int:
    h = hashlib.blake2b(f"{source}\0{path}\0{occurrence}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1  # 63 bits: a valid point id everywhere


def _file_key(sf, params: dict, selection: Selection) -> str:
    extra = json.dumps([params, selection.exclude_deprecated, sorted(sf.recent_lines or [])], sort_keys=True)
    return hashlib.sha256(sf.text.encode("utf-8") + b"\0" + extra.encode()).hexdigest()


def _live_ids(manifest: dict) -> set[int]:
    return {i for files in manifest["files"].values() for f in files.values() for i in f["ids"]}


def _progress(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", leave=False)


def index_source(settings, paths: TenantPaths, root: Path | str, *, source: str = "main",
                 selection: Selection = Selection(), chunking: str | None = None, rebuild: bool = False,
                 progress: bool = False) -> dict:
    """Index (or re-index) `root` as source `source` of the tenant. Returns the summary dict."""
    t0 = time.perf_counter()
    cfg = settings.retrieval
    source = SourceName(source)
    registry = registry_from_settings(settings)
    registry.tenant(paths.tenant)  # unknown tenant -> NotFound
    params = chunk_params(cfg) | ({"mode": chunking} if chunking else {})
    previous = read_manifest(paths) or empty_manifest()
    clean = frozenset(f["content_sha"] for f in previous["files"].get(SourceName(source), {}).values()
                      if "content_sha" in f)
    result = select_files(root, selection, cfg, progress=progress, known_clean=clean)
    if not result.files:
        raise NothingToIndex(f"nothing to index in {root}: {result.files_seen} files seen, "
                             f"skipped {dict(result.skipped) or 'none'}")

    with _tenant_lock(paths):
        seg_root = segments_dir(paths)
        remove_stale_partials(seg_root)
        old = read_manifest(paths) or empty_manifest()
        _remove_unreferenced_segments(seg_root, old)   # written by a run killed before it published
        if old.get("embedding_model") not in (None, cfg.embedding_model):
            rebuild = True
        # the manifest remembers the dimension, so a re-index with nothing to embed never loads the model
        dim = old.get("dim") if not rebuild and old.get("dim") else dimension(cfg.embedding_model)
        store = open_store(settings, paths, dim)
        if rebuild:  # new model or an explicit rebuild: no vector is reusable (dimensions may differ)
            store.drop()
            store = open_store(settings, paths, dim)
        published = old["generation"]
        store.delete_newer_than(published)         # points of a run killed before it published
        store.delete(old.get("garbage_ids", []))   # dead points of a run killed before its GC
        new = json.loads(json.dumps(old)) if not rebuild else empty_manifest() | {"generation": published}
        gen = published + 1
        old_source_files = new["files"].get(source, {})
        tombstones = {k: set(v) for k, v in new["tombstones"].items()}
        live_before = _live_ids(old)

        changed, kept = [], {}
        for sf in _progress(result.files, "chunking", progress):
            key = _file_key(sf, params, selection)
            prev = old_source_files.get(sf.path)
            if prev is not None and prev["sha"] == key and not rebuild:
                kept[sf.path] = prev
            else:
                changed.append((sf, key))
        source_info = {"location": str(Path(root).resolve()), "selection": selection.to_dict(),
                       "chunking": params["mode"]}
        update_symbols(paths, source, result.files, rebuild=rebuild,  # reconciles itself; commits before publish
                       exclude_deprecated=selection.exclude_deprecated)
        if not changed and len(kept) == len(old_source_files) and old["sources"].get(source) == source_info:
            # nothing changed: keep the published generation, write nothing
            return _summary(paths, source, published, result, 0, 0, len(live_before), 0, 0.0, t0)
        for path, prev in old_source_files.items():  # replaced or deleted files of this source
            if path not in kept:
                tombstones.setdefault(prev["segment"], set()).update(prev["rows"])

        rows, files_entry = [], dict(kept)
        for sf, key in changed:
            seen: Counter = Counter()
            entry = {"sha": key, "content_sha": sf.sha, "segment": None, "rows": [], "ids": []}
            for c in file_chunks(sf, selection, cfg, params["mode"]):
                seen[c.text] += 1
                cid = chunk_id(source, c.path, c.text, seen[c.text])
                entry["rows"].append(len(rows))
                entry["ids"].append(cid)
                rows.append({"id": cid, "source": source, "path": c.path, "language": c.language,
                             "start_line": c.start_line, "end_line": c.end_line, "symbol": c.symbol,
                             "deprecated": c.deprecated, "text": c.text})
            files_entry[sf.path] = entry

        reusable = set() if rebuild else live_before
        to_embed = [r for r in rows if r["id"] not in reusable]
        t_embed = time.perf_counter()
        texts = [embedding_text(r["path"], r["symbol"], r["text"]) for r in to_embed]
        vectors = embed(cfg.embedding_model, texts, cfg.embed_batch_size, progress=progress,
                        threads=cfg.embed_threads) if texts else []
        embed_seconds = time.perf_counter() - t_embed
        store.upsert([VecPoint(r["id"], v, source, r["path"], gen) for r, v in zip(to_embed, vectors)])

        segments = list(new["segments"])
        if rows:
            name = f"g{gen:06d}"
            with staging_dir(seg_root / name) as tmp:
                write_segment(tmp, rows)
            segments.append({"name": name, "rows": len(rows)})
            for entry in files_entry.values():
                if entry["segment"] is None:
                    entry["segment"] = name
        new["files"][source] = files_entry
        new["tombstones"] = {k: sorted(v) for k, v in tombstones.items() if v}
        new["segments"] = segments
        total = sum(s["rows"] for s in segments)
        dead_rows = sum(len(v) for v in new["tombstones"].values())
        if len(segments) > cfg.max_segments or (total and dead_rows / total > 0.5):
            _merge(new, seg_root, gen)

        live_after = _live_ids(new)
        garbage = sorted(live_before - live_after)
        new.update(generation=gen, embedding_model=cfg.embedding_model, dim=dim, garbage_ids=garbage,
                   updated_at=time.time())
        new["sources"][source] = source_info
        atomic_write_json(manifest_path(paths), new)   # <- the publish point

        store.delete(garbage)
        _remove_unreferenced_segments(seg_root, new)
    registry.add_source(paths.tenant, source, str(Path(root).resolve()))
    return _summary(paths, source, gen, result, len(changed), len(set(old_source_files) - set(files_entry)),
                    len(live_after), len(to_embed), embed_seconds, t0)


def _summary(paths, source, gen, result, changed, removed, chunks, embedded, embed_seconds, t0) -> dict:
    return {"tenant": str(paths.tenant), "source": source, "generation": gen,
            "files_seen": result.files_seen, "files_indexed": len(result.files),
            "files_changed": changed, "files_removed": removed,
            "skipped": dict(sorted(result.skipped.items())), "chunks": chunks,
            "chunks_embedded": embedded, "embed_seconds": round(embed_seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3)}


def _remove_unreferenced_segments(seg_root: Path, manifest: dict) -> None:
    referenced = {s["name"] for s in manifest["segments"]}
    for d in seg_root.iterdir() if seg_root.is_dir() else ():
        if d.is_dir() and d.name not in referenced and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)


def _merge(manifest: dict, seg_root: Path, gen: int) -> None:
    """Rewrite every live row into one segment (ids unchanged, so no vector moves)."""
    from retrieval.segments import load_segment

    rows, remap = [], {}
    for seg in manifest["segments"]:
        s = load_segment(seg_root / seg["name"], manifest["tombstones"].get(seg["name"], []))
        for i, r in enumerate(s.rows):
            if s.live[i]:
                remap[(seg["name"], i)] = len(rows)
                rows.append(r)
    name = f"g{gen:06d}m"
    with staging_dir(seg_root / name) as tmp:
        write_segment(tmp, rows)
    for files in manifest["files"].values():
        for entry in files.values():
            entry["rows"] = [remap[(entry["segment"], i)] for i in entry["rows"]]
            entry["segment"] = name
    manifest["segments"] = [{"name": name, "rows": len(rows)}]
    manifest["tombstones"] = {}
