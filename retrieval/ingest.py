"""Index one named source of a tenant, incrementally: searchable by BM25 first, vectors after.

1. Stream the selected files (selection.py) one at a time and compare each file's
   hash (content and chunking parameters) with the manifest: unchanged files keep
   their rows. The tenant's caps on indexed files and bytes are checked as files arrive.
2. Chunk changed and new files into BM25 segments of capped size (SegmentWriter),
   staged and renamed into place.
3. Tombstone rows of changed and deleted files of *this* source; merge small
   segments when they pile up (never past the cap).
4. Publish the manifest atomically: from here the new generation is searchable by
   BM25, and its new chunks are listed as `pending_ids` (no vector yet). Then
   garbage-collect vectors of dead chunks and unreferenced segments.
5. Embed the pending chunks in batches and upsert them tagged with the published
   generation, so hybrid search uses each vector as soon as it exists; the manifest
   is republished from time to time with the shorter pending list. A kill leaves
   the published generation searchable; `embed_pending` (`codetailor index
   --embed-pending`) resumes, skipping chunks whose vectors reached the store.

A crash before step 4 leaves the previous index live; the next run deletes the
unpublished generation's segments and points.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from functools import partial
from pathlib import Path

from codetailor.atomic import exclusive, remove_stale_partials
from codetailor.errors import Busy, CodetailorError, QuotaExceeded
from codetailor.home import TenantPaths
from codetailor.names import SourceName
from codetailor.tenants import registry_from_settings

from retrieval.segments import (SegmentWriter, empty_manifest, iter_rows, publish_manifest, read_manifest,
                                row_tokens, segments_dir, write_segment)
from retrieval.selection import FileScan, Selection, SourceFile, chunk_params, file_chunks, is_recent
from retrieval.symbol_table import drop_source_symbols, update_symbols
from retrieval.vectors import VecPoint, open_store


class IndexBusy(Busy):
    pass


class NothingToIndex(CodetailorError):
    pass


REPUBLISH_SECONDS = 30.0   # while embedding, how often the shrinking pending list is published


def _tenant_lock(paths: TenantPaths):
    return exclusive(paths.index_dir / ".lock",
                     lambda: IndexBusy(f"tenant {paths.tenant!r} is being indexed by another process"))


def chunk_id(source: str, path: str, text: str, occurrence: int) -> int:
    h = hashlib.blake2b(f"{source}\0{path}\0{occurrence}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1  # 63 bits: a valid point id everywhere


def _file_key(sf, params: dict, selection: Selection) -> str:
    extra = json.dumps([params, selection.exclude_deprecated, sorted(sf.recent_lines or [])], sort_keys=True)
    return hashlib.sha256(sf.text.encode("utf-8") + b"\0" + extra.encode()).hexdigest()


def _live_ids(manifest: dict) -> set[int]:
    return {i for files in manifest["files"].values() for f in files.values() for i in f["ids"]}


class _Quota:
    """The tenant's caps on indexed files and bytes, over all its sources."""

    def __init__(self, cfg, manifest: dict, source: str, tenant: str):
        others = [f for name, files in manifest["files"].items() if name != source for f in files.values()]
        self.files, self.bytes = len(others), sum(f.get("bytes", 0) for f in others)
        self.cfg, self.tenant = cfg, tenant

    def add(self, nbytes: int) -> None:
        self.files += 1
        self.bytes += nbytes
        if self.files > self.cfg.max_tenant_files:
            raise QuotaExceeded(f"tenant {self.tenant!r} would index more than retrieval.max_tenant_files="
                                f"{self.cfg.max_tenant_files} files: narrow the source with --include/--exclude "
                                "or raise the cap")
        if self.bytes > self.cfg.max_tenant_bytes:
            raise QuotaExceeded(f"tenant {self.tenant!r} would index more than retrieval.max_tenant_bytes="
                                f"{self.cfg.max_tenant_bytes} bytes: narrow the source with --include/--exclude "
                                "or raise the cap")


def _stderr(msg: str, enabled: bool) -> None:
    if enabled:
        import sys

        print(f"codetailor: {msg}", file=sys.stderr, flush=True)


def index_source(settings, paths: TenantPaths, root: Path | str, *, source: str = "main",
                 selection: Selection = Selection(), chunking: str | None = None, rebuild: bool = False,
                 progress: bool = False, embed: bool = True) -> dict:
    """Index (or re-index) `root` as source `source` of the tenant. Returns the summary dict.
    `embed=False` returns once the generation is searchable by BM25 (vectors stay pending)."""
    t0 = time.perf_counter()
    cfg = settings.retrieval
    source = SourceName(source)
    registry = registry_from_settings(settings)
    registry.tenant(paths.tenant)  # unknown tenant -> NotFound
    params = chunk_params(cfg) | ({"mode": chunking} if chunking else {})

    with _tenant_lock(paths):
        seg_root = segments_dir(paths)
        remove_stale_partials(seg_root)
        old = read_manifest(paths) or empty_manifest()
        _remove_unreferenced_segments(seg_root, old)   # written by a run killed before it published
        if old.get("embedding_model") not in (None, cfg.embedding_model):
            rebuild = True
        store = open_store(settings, paths, old.get("dim") or 0)   # deletes need no dimension
        if rebuild:  # new model or an explicit rebuild: no vector is reusable (dimensions may differ)
            store.drop()
        published = old["generation"]
        store.delete_newer_than(published)         # points of a run killed before it published
        store.delete(old["garbage_ids"])           # dead points of a run killed before its GC
        new = json.loads(json.dumps(old)) if not rebuild else empty_manifest() | {"generation": published}
        gen = published + 1
        old_source_files = new["files"].get(source, {})
        clean = frozenset(f["content_sha"] for f in old_source_files.values())
        scan = FileScan(root, selection, cfg, progress=progress, known_clean=clean,
                        prepare=partial(prepare_chunks, selection=selection, config=cfg, mode=params["mode"]),
                        prepare_known=rebuild)
        quota = _Quota(cfg, new, source, str(paths.tenant))
        writer = SegmentWriter(seg_root, f"g{gen:06d}", cfg.max_segment_rows)
        done: dict = {}

        def chunk_pass():
            done["out"] = yield from _chunk_files(scan, writer, quota, old_source_files, source,
                                                  selection, cfg, params, rebuild)
        try:
            # The symbol table reads the same stream of files the chunker does (each file read once);
            # it reconciles the source's rows itself and commits before the manifest is published.
            update_symbols(paths, source, chunk_pass(), rebuild=rebuild,
                           exclude_deprecated=selection.exclude_deprecated)
            files_entry, changed, selected = done["out"]
            writer.finish()
        except BaseException:
            for name in writer.abandon():
                shutil.rmtree(seg_root / name, ignore_errors=True)
            raise
        if not selected:
            raise NothingToIndex(f"nothing to index in {root}: {scan.files_seen} files seen, "
                                 f"skipped {dict(scan.skipped) or 'none'}")

        source_info = {"location": str(Path(root).resolve()), "selection": selection.to_dict(),
                       "chunking": params["mode"]}
        # registered before the publish, under the index lock: the source is named by the registry
        # whenever the index holds its rows (`source remove` relies on it)
        registry.add_source(paths.tenant, source, str(Path(root).resolve()))
        live_before = _live_ids(old)
        if not changed and len(files_entry) == len(old_source_files) and old["sources"].get(source) == source_info:
            # nothing changed: keep the published generation, write nothing
            summary = _summary(paths, source, published, scan, selected, 0, 0, len(live_before),
                               len(old["pending_ids"]), t0)
        else:
            tombstones = {k: set(v) for k, v in new["tombstones"].items()}
            for path, prev in old_source_files.items():  # replaced or deleted files of this source
                if files_entry.get(path) is not prev and prev["segment"]:
                    tombstones.setdefault(prev["segment"], set()).update(prev["rows"])
            new["files"][source] = files_entry
            new["tombstones"] = {k: sorted(v) for k, v in tombstones.items() if v}
            new["segments"] = list(new["segments"]) + [{"name": n, "rows": r} for n, r in writer.written]
            _merge_small(new, seg_root, gen, cfg)

            live_after = _live_ids(new)
            with_vectors = live_before - set(old["pending_ids"]) if not rebuild else set()
            new.update(generation=gen, embedding_model=cfg.embedding_model,
                       garbage_ids=sorted(live_before - live_after),
                       pending_ids=sorted(live_after - with_vectors), updated_at=time.time())
            if rebuild:
                new["dim"] = None
            new["sources"][source] = source_info
            publish_manifest(paths, new)   # <- the publish point: searchable by BM25 from here
            searchable_s = time.perf_counter() - t0
            _stderr(f"searchable by BM25 after {searchable_s:.1f} s; {len(new['pending_ids'])} chunks to embed",
                    progress)
            store.delete(new["garbage_ids"])
            _remove_unreferenced_segments(seg_root, new)
            summary = _summary(paths, source, gen, scan, selected, changed,
                               len(set(old_source_files) - set(files_entry)), len(live_after),
                               len(new["pending_ids"]), t0)
            summary["searchable_seconds"] = round(searchable_s, 3)
        if embed:
            done = _embed_pending(settings, paths, progress)
            summary.update(chunks_embedded=done["chunks_embedded"], embed_seconds=done["embed_seconds"],
                           vector_index_seconds=done.get("vector_index_seconds", 0.0),
                           vectors_pending=done["vectors_pending"], encoder=done["encoder"])
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def drop_source(settings, paths: TenantPaths, source: str) -> dict:
    """Remove one source's rows from the tenant's index (a source disconnected from the tenant):
    its BM25 rows become tombstones in a new generation, then its vectors and its symbols go; the
    other sources' rows, segments and vectors stay as they are, so no re-index is needed.
    The same order as an index run: the symbol table commits, the manifest is published, then the
    dead vectors are collected (a kill before that leaves them listed as garbage for the next run)."""
    t0 = time.perf_counter()
    cfg = settings.retrieval
    source = SourceName(source)
    with _tenant_lock(paths):
        symbols = drop_source_symbols(paths, source)
        old = read_manifest(paths)
        out = {"tenant": str(paths.tenant), "source": source, "files_removed": 0, "chunks_removed": 0,
               "symbol_files_removed": symbols}
        if old is None or (source not in old["files"] and source not in old["sources"]):
            return out | {"generation": old["generation"] if old else None,
                          "seconds": round(time.perf_counter() - t0, 3)}
        seg_root = segments_dir(paths)
        remove_stale_partials(seg_root)
        _remove_unreferenced_segments(seg_root, old)
        store = open_store(settings, paths, old.get("dim") or 0)   # deletes need no dimension
        store.delete_newer_than(old["generation"])
        store.delete(old["garbage_ids"])
        new = json.loads(json.dumps(old))
        gen = old["generation"] + 1
        gone = new["files"].pop(source, {})
        new["sources"].pop(source, None)
        tombstones = {k: set(v) for k, v in new["tombstones"].items()}
        for entry in gone.values():
            if entry["segment"]:
                tombstones.setdefault(entry["segment"], set()).update(entry["rows"])
        new["tombstones"] = {k: sorted(v) for k, v in tombstones.items() if v}
        _merge_small(new, seg_root, gen, cfg)
        live_before, live_after = _live_ids(old), _live_ids(new)
        new.update(generation=gen, garbage_ids=sorted(live_before - live_after),
                   pending_ids=sorted(set(old["pending_ids"]) & live_after), updated_at=time.time())
        publish_manifest(paths, new)   # <- from here no search sees the source
        store.delete(new["garbage_ids"])
        _remove_unreferenced_segments(seg_root, new)
    return out | {"generation": gen, "files_removed": len(gone), "chunks_removed": len(live_before - live_after),
                  "seconds": round(time.perf_counter() - t0, 3)}


def prepare_chunks(sf: SourceFile, *, selection: Selection, config, mode: str) -> list[tuple]:
    """A file's chunks with their BM25 tokens (space-joined: one string crosses processes faster
    than a list), before the --since filter (its blame runs in the indexing process). Runs where
    the scan reads the file, a worker process on a large source."""
    return [(c, " ".join(row_tokens(c.path, c.symbol, c.text)))
            for c in file_chunks(sf, selection, config, mode)]


def _chunks_with_tokens(sf, selection, cfg, mode) -> list[tuple]:
    prepared = sf.prepared
    if prepared is None:   # an unchanged file's content with a changed key: rare, done here
        prepared = prepare_chunks(sf, selection=selection, config=cfg, mode=mode)
    if sf.recent_lines is not None:
        prepared = [(c, t) for c, t in prepared if is_recent(c, sf.recent_lines)]
    return prepared


def _chunk_files(scan, writer, quota, old_source_files, source, selection, cfg, params, rebuild):
    """Stream the scan's files into the segment writer, yielding each file once it is handled (the
    symbol table consumes the same stream). Returns (files entry, changed, selected)."""
    files_entry: dict[str, dict] = {}
    changed = selected = 0
    for sf in scan:
        yield sf
        selected += 1
        nbytes = len(sf.text.encode("utf-8"))
        quota.add(nbytes)
        key = _file_key(sf, params, selection)
        prev = old_source_files.get(sf.path)
        if prev is not None and prev["sha"] == key and not rebuild:
            files_entry[sf.path] = prev
            continue
        changed += 1
        seen: Counter = Counter()
        rows, ids, tokens = [], [], []
        for c, toks in _chunks_with_tokens(sf, selection, cfg, params["mode"]):
            seen[c.text] += 1
            cid = chunk_id(source, c.path, c.text, seen[c.text])
            ids.append(cid)
            rows.append({"id": cid, "source": source, "path": c.path, "language": c.language,
                         "start_line": c.start_line, "end_line": c.end_line, "symbol": c.symbol,
                         "deprecated": c.deprecated, "text": c.text})
            tokens.append(toks.split())
        segment, row_numbers = writer.add_file(rows, tokens) if rows else (None, [])
        files_entry[sf.path] = {"sha": key, "content_sha": sf.sha, "segment": segment, "rows": row_numbers,
                                "ids": ids, "bytes": nbytes}
    return files_entry, changed, selected


def embed_pending(settings, paths: TenantPaths, progress: bool = False, max_seconds: float | None = None) -> dict:
    """Embed the chunks of the published generation that have no vector yet (resumable).
    `max_seconds`: stop after the batch that passes this budget (the rest stays pending)."""
    registry_from_settings(settings).tenant(paths.tenant)  # unknown tenant -> NotFound
    t0 = time.perf_counter()
    with _tenant_lock(paths):
        if read_manifest(paths) is None:
            from retrieval.search import NotIndexed

            raise NotIndexed(f"tenant {paths.tenant!r} has no index yet: run `codetailor index --tenant "
                             f"{paths.tenant} PATH`")
        out = _embed_pending(settings, paths, progress, max_seconds)
    return {"tenant": str(paths.tenant), **out, "seconds": round(time.perf_counter() - t0, 3)}


def _embed_pending(settings, paths: TenantPaths, progress: bool, max_seconds: float | None = None) -> dict:
    """With the tenant lock held: embed pending chunks in batches, republishing progress."""
    from retrieval.embed import dimension, embed, embedding_text, prepare

    cfg = settings.retrieval
    manifest = read_manifest(paths)
    encoder = prepare(settings)
    if manifest.get("encoder") != encoder:
        if manifest.get("encoder") is not None:
            # Another encoder built the stored vectors (another vector space): re-embed every live
            # chunk with this one. The store is emptied before the manifest says so, so a kill in
            # between leaves the old encoder's name over no vectors, never two spaces mixed.
            open_store(settings, paths, manifest.get("dim") or 0).drop()
            manifest.update(pending_ids=sorted(_live_ids(manifest)), dim=None)
            _stderr(f"encoder changed from {manifest['encoder']} to {encoder}: re-embedding "
                    f"{len(manifest['pending_ids'])} chunks", progress)
        manifest["encoder"] = encoder
        publish_manifest(paths, manifest)
    pending = set(manifest["pending_ids"])
    t0 = time.perf_counter()
    if not pending:
        return {"generation": manifest["generation"], "chunks_embedded": 0, "embed_seconds": 0.0,
                "vectors_pending": 0, "encoder": encoder}
    dim = manifest.get("dim") or dimension(settings, encoder)
    store = open_store(settings, paths, dim)
    if manifest.get("dim") != dim:
        manifest["dim"] = dim
        publish_manifest(paths, manifest)
    gen = manifest["generation"]
    t0 = time.perf_counter()   # embedding time, without loading the model
    ordered = sorted(pending)
    for i in range(0, len(ordered), 1000):   # written by a run killed before it republished
        pending -= store.existing(ordered[i:i + 1000])
    total, done = len(pending), 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="embedding", unit="chunk", leave=False)
    last_publish = time.monotonic()
    batch: list[dict] = []
    group = cfg.embed_batch_size * 8   # rows per embed call: sorted by length inside (embed.py)

    def flush():
        nonlocal done, last_publish, batch
        texts = [embedding_text(r["path"], r["symbol"], r["text"]) for r in batch]
        vectors = embed(settings, encoder, texts, cfg.embed_batch_size, threads=cfg.embed_threads)
        store.upsert([VecPoint(r["id"], v, r["source"], r["path"], gen) for r, v in zip(batch, vectors)])
        pending.difference_update(r["id"] for r in batch)
        done += len(batch)
        if bar is not None:
            bar.update(len(batch))
        batch = []
        if time.monotonic() - last_publish > REPUBLISH_SECONDS:
            manifest["pending_ids"] = sorted(pending)
            publish_manifest(paths, manifest)
            last_publish = time.monotonic()

    seg_root = segments_dir(paths)
    out_of_time = False
    for seg in manifest["segments"]:
        for r in iter_rows(seg_root / seg["name"]):
            if r["id"] in pending:
                batch.append(r)
                if len(batch) >= group:
                    flush()
                    if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                        out_of_time = True
                        break
        if out_of_time:
            break
    if batch:
        flush()
    if bar is not None:
        bar.close()
    manifest["pending_ids"] = sorted(pending)   # empty unless stopped by max_seconds
    manifest["updated_at"] = time.time()
    publish_manifest(paths, manifest)
    embed_seconds = time.perf_counter() - t0
    # The embedded store has no background optimiser: without this call new vectors stay in
    # unindexed segments and every query scans all of them (27 ms at 220k vectors instead of about
    # 1 ms with the HNSW graph). It does only what the optimiser's thresholds call for, so a
    # small change costs little; the vectors are searchable (exactly) while it runs.
    t1 = time.perf_counter()
    if done:
        store.optimize()
    return {"generation": gen, "chunks_embedded": done, "embed_seconds": round(embed_seconds, 3),
            "vector_index_seconds": round(time.perf_counter() - t1, 3),
            "vectors_pending": len(pending), "chunks_to_embed": total, "encoder": encoder}


def _summary(paths, source, gen, scan, selected, changed, removed, chunks, pending, t0) -> dict:
    return {"tenant": str(paths.tenant), "source": source, "generation": gen,
            "files_seen": scan.files_seen, "files_indexed": selected,
            "files_changed": changed, "files_removed": removed,
            "skipped": dict(sorted(scan.skipped.items())), "chunks": chunks,
            "chunks_embedded": 0, "embed_seconds": 0.0, "vectors_pending": pending,
            "secret_prefilter_cleared": scan.prefiltered,
            "seconds": round(time.perf_counter() - t0, 3)}


def _remove_unreferenced_segments(seg_root: Path, manifest: dict) -> None:
    referenced = {s["name"] for s in manifest["segments"]}
    for d in seg_root.iterdir() if seg_root.is_dir() else ():
        if d.is_dir() and d.name not in referenced and not d.name.startswith("."):
            shutil.rmtree(d, ignore_errors=True)


def _merge_small(manifest: dict, seg_root: Path, gen: int, cfg) -> None:
    """Rewrite segments whose rows are mostly dead, and merge the smallest segments while there are
    more than `max_segments`, never making one larger than `max_segment_rows` (ids unchanged, so no
    vector moves). Each merge streams its inputs' live rows: memory stays within one segment."""
    cap = cfg.max_segment_rows
    live = {s["name"]: s["rows"] - len(manifest["tombstones"].get(s["name"], [])) for s in manifest["segments"]}
    groups: list[list[str]] = [[s["name"]] for s in manifest["segments"]
                               if live[s["name"]] * 2 < s["rows"]]          # mostly dead: compact alone
    grouped = {n for g in groups for n in g}
    rest = sorted((live[s["name"]], s["name"]) for s in manifest["segments"] if s["name"] not in grouped)
    count = len(manifest["segments"])
    while count > cfg.max_segments and len(rest) >= 2 and rest[0][0] + rest[1][0] <= cap:
        (a_rows, a), (b_rows, b) = rest[0], rest[1]
        rest = sorted(rest[2:] + [(a_rows + b_rows, f"{a}+{b}")])
        count -= 1
    for _, name in rest:
        if "+" in name:
            groups.append(name.split("+"))
    for k, group in enumerate(groups):
        _merge_group(manifest, seg_root, group, f"g{gen:06d}m{k:03d}")


def _merge_group(manifest: dict, seg_root: Path, names: list[str], target: str) -> None:
    rows, remap = [], {}
    for name in names:
        dead = set(manifest["tombstones"].get(name, []))
        for i, r in enumerate(iter_rows(seg_root / name)):
            if i not in dead:
                remap[(name, i)] = len(rows)
                rows.append(r)
    from codetailor.atomic import staging_dir

    members = set(names)
    manifest["segments"] = [s for s in manifest["segments"] if s["name"] not in members]
    for name in names:
        manifest["tombstones"].pop(name, None)
    if not rows:   # every row dead: the segments just go
        return
    with staging_dir(seg_root / target) as tmp:
        write_segment(tmp, rows)
    for files in manifest["files"].values():
        for entry in files.values():
            if entry["segment"] in members:
                entry["rows"] = [remap[(entry["segment"], i)] for i in entry["rows"]]
                entry["segment"] = target
    manifest["segments"].append({"name": target, "rows": len(rows)})
