"""Retrieval benchmark: index throughput, one-file re-index, query latency, retrieval quality.

    .venv/bin/python bench/retrieval_bench.py [--repo PATH] [--sizes 10000,100000] [--queries 200]

- Throughput and re-index on a real public repo (default: the `pathspec` package
  installed in .venv, a plain folder), embedded store, warm model.
- Quality: held-out lines of that repo; the query is the 10 lines above the line,
  the line's own file is excluded; a hit is a top-k chunk holding an identifier of
  the target line that the query window does not already hold.
- Latency at N chunks: BM25 over N real chunks of the Python standard library
  (line windows); vectors are synthetic (a mixture of 256 Gaussian clusters in
  384-d), because embedding 100k chunks takes an hour on 2 cores. The vector index is
  optimised (HNSW built) before timing; the query's embedding is timed separately.
- `--symbols` (alone): the symbol table at `--symbol-defs` definitions of the standard
  library (repeated under new paths if short): single lookups, then `--queries` cursors
  at random points of 2,000-line library files resolved in full (the request's parse
  plus lookups), cold (the file's first request: focused on the cursor's neighbourhood, and
  side by side through the whole file's outline and with the whole text parsed) and while
  typing (the next keystrokes, which re-parse incrementally), and the lookups' own share;
  and the index time the table adds on `--repo`, against the whole index run and against
  chunking the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import publish  # noqa: E402
from codetailor.config import load_settings  # noqa: E402
from codetailor.tenants import registry_from_settings  # noqa: E402


def pct(xs, p):
    return round(float(np.percentile(np.asarray(xs) * 1000, p)), 3)


def throughput(settings, registry, repo: Path, tenant: str = "bench-repo") -> dict:
    from retrieval import index_source
    from retrieval.embed import warm_up

    warm_up(settings)  # warm (and export the int8 encoder if missing): model load is not indexing
    paths, _ = registry.create_tenant(tenant)
    work = Path(tempfile.mkdtemp()) / "repo"
    shutil.copytree(repo, work, ignore=shutil.ignore_patterns("__pycache__"))
    s = index_source(settings, paths, work)
    out = {"repo": str(repo), "files_indexed": s["files_indexed"], "chunks": s["chunks"], "seconds": s["seconds"],
           "files_per_s": round(s["files_indexed"] / s["seconds"], 2), "chunks_per_s": round(s["chunks"] / s["seconds"], 2),
           "embed_seconds": s["embed_seconds"], "embed_share": round(s["embed_seconds"] / s["seconds"], 3),
           "embed_chunks_per_s": round(s["chunks_embedded"] / max(s["embed_seconds"], 1e-9), 2)}
    target = sorted(work.rglob("*.py"))[0]
    target.write_text(target.read_text() + "\n\ndef bench_added_function(x):\n    return x * 2\n")
    s2 = index_source(settings, paths, work)
    out["one_file_reindex_s"] = s2["seconds"]
    out["one_file_reindex_embedded"] = s2["chunks_embedded"]
    return out, paths, work


def held_out_cases(files, n: int) -> list[tuple[str, str, set[str]]]:
    """(path, the 10 lines above a line, identifiers of that line the window lacks) for `n` random
    code lines of `files` ((path, text) pairs); shared by the encoder bench."""
    import keyword

    from retrieval.tokens import identifiers

    cases = []
    skip = set(keyword.kwlist) | {"self", "cls", "None", "True", "False"}
    for path, text in files:
        lines = text.splitlines()
        for i in range(10, len(lines)):
            line = lines[i].strip()
            if not line or line.startswith(("#", '"', "'")):
                continue
            window = "\n".join(lines[i - 10:i])
            targets = identifiers(line) - identifiers(window) - skip
            if targets and window.strip():
                cases.append((path, window, targets))
    random.Random(0).shuffle(cases)
    return cases[:n]


def quality(settings, paths, work: Path, n: int, top_k: int = 3) -> dict:
    from retrieval import search
    from retrieval.tokens import identifiers

    cases = held_out_cases(((str(f.relative_to(work)), f.read_text()) for f in sorted(work.rglob("*.py"))), n)
    res = {}
    for mode in ("bm25", "semantic", "hybrid"):
        hits = 0
        for path, window, targets in cases:
            got = search(settings, paths, window, mode=mode, top_k=top_k, exclude_paths=[path])
            hits += any(targets & identifiers(h.text) for h in got)
        res[mode] = round(hits / max(1, len(cases)), 3)
    return {"cases": len(cases), "top_k": top_k, "hit_rate": res}


def stdlib_sources():
    """(relative path, path, text) of the standard library's readable Python files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for f in sorted(root.rglob("*.py")):
        try:
            yield str(f.relative_to(root)), f, f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def stdlib_rows(n: int) -> list[dict]:
    from retrieval.chunking import chunk_text

    rows = []
    for rel, _, text in stdlib_sources():
        for c in chunk_text(rel, "python", text, "lines", chunk_lines_n=20, overlap=5):
            rows.append({"id": len(rows) + 1, "source": "main", "path": c.path, "language": "python",
                         "start_line": c.start_line, "end_line": c.end_line, "symbol": None, "text": c.text})
            if len(rows) == n:
                return rows
    while len(rows) < n:  # the stdlib is ~100k windows: repeat under new paths if short
        r = dict(rows[len(rows) % 50000])
        rows.append(r | {"id": len(rows) + 1, "path": "copy/" + r["path"]})
    return rows


def latency(settings, registry, n: int, queries: int) -> dict:
    from codetailor.atomic import staging_dir
    from retrieval import search
    from retrieval.embed import embed, prepare
    from retrieval.segments import empty_manifest, publish_manifest, segments_dir, write_segment
    from retrieval.vectors import VecPoint, open_store

    paths, _ = registry.create_tenant(f"bench-{n}")
    t = time.perf_counter()
    rows = stdlib_rows(n)
    with staging_dir(segments_dir(paths) / "g000001") as tmp:
        write_segment(tmp, rows)
    bm25_build = time.perf_counter() - t
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(256, 384)).astype(np.float32)
    vecs = centers[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = open_store(settings, paths, 384)
    t = time.perf_counter()
    for i in range(0, n, 2000):
        store.upsert([VecPoint(r["id"], v, "main", r["path"], 1) for r, v in zip(rows[i:i + 2000], vecs[i:i + 2000])])
    upsert = time.perf_counter() - t
    t = time.perf_counter()
    store.optimize()
    optimize = time.perf_counter() - t
    # "encoder" only names what built the vectors; every query here brings its own vector
    m = empty_manifest() | {"generation": 1, "dim": 384, "encoder": "synthetic-gaussian-mixture",
                            "embedding_model": settings.retrieval.embedding_model,
                            "segments": [{"name": "g000001", "rows": n}]}
    m["files"]["main"] = {}
    for i, r in enumerate(rows):
        e = m["files"]["main"].setdefault(r["path"], {"sha": "", "content_sha": "", "segment": "g000001",
                                                      "rows": [], "ids": []})
        e["rows"].append(i)
        e["ids"].append(r["id"])
    publish_manifest(paths, m)
    qrows = random.Random(1).sample(rows, queries)
    qvecs = vecs[[r["id"] - 1 for r in qrows]] + 0.3 * rng.normal(size=(queries, 384)).astype(np.float32)
    out = {"chunks": n, "bm25_build_s": round(bm25_build, 2), "vector_upsert_s": round(upsert, 2),
           "vector_optimize_s": round(optimize, 2)}
    search(settings, paths, "warm up", mode="hybrid", query_vector=qvecs[0])
    # modes interleaved query by query, so a change in machine load hits all three alike
    times: dict[str, list[float]] = {"bm25": [], "semantic": [], "hybrid": []}
    out["load_avg_before"] = os.getloadavg()[0]
    for r, v in zip(qrows, qvecs):
        q = "\n".join(r["text"].splitlines()[:10])
        for mode in times:
            t = time.perf_counter()
            hits = search(settings, paths, q, mode=mode, top_k=5, query_vector=v)
            times[mode].append(time.perf_counter() - t)
            assert len(hits) == 5, (mode, len(hits))
    out["load_avg_after"] = os.getloadavg()[0]
    for mode, ts in times.items():
        out[mode] = {"p50_ms": pct(ts, 50), "p95_ms": pct(ts, 95)}
    times = []
    encoder = prepare(settings)
    out["encoder"] = encoder
    for r in qrows[:50]:
        t = time.perf_counter()
        embed(settings, encoder, ["\n".join(r["text"].splitlines()[:10])], threads=settings.retrieval.embed_threads)
        times.append(time.perf_counter() - t)
    out["query_embedding"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    return out


def symbol_files(n_defs: int):
    """SourceFiles of the standard library holding about `n_defs` definitions (repeated under
    copy<i>/ paths if the library holds fewer)."""
    from codetailor.languages import language_of
    from retrieval.selection import SourceFile
    from retrieval.symbols import extract

    base, total = [], 0
    for rel, f, text in stdlib_sources():
        k = len(extract(rel, text, "python").definitions)
        base.append((SourceFile(rel, f, language_of(rel), text), k))
        total += k
        if total >= n_defs:
            break
    out, copy = [sf for sf, _ in base], 0
    while total < n_defs:
        copy += 1
        for sf, k in base:
            out.append(SourceFile(f"copy{copy}/{sf.path}", sf.abs_path, sf.language, sf.text))
            total += k
            if total >= n_defs:
                break
    return out


class _TimedTable:
    """Wraps a SymbolTable: the time spent in its (outermost) lookups."""

    def __init__(self, table):
        self.table, self.seconds, self.cpu_seconds, self._depth = table, 0.0, 0.0, 0

    def __getattr__(self, name):
        fn = getattr(self.table, name)
        if not callable(fn):
            return fn

        def timed(*a, **k):
            self._depth += 1
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - t
                    self.cpu_seconds += time.thread_time() - c
        return timed


def symbols(settings, registry, n_defs: int, cursors: int, repo: Path) -> dict:
    """Symbol table: build at n_defs definitions, lookup and full-resolution latency at a
    cursor of a 2,000-line file, and the index time the table adds on a real repository."""
    from retrieval import index_source
    from retrieval.selection import chunk_params, file_chunks, Selection
    from retrieval.chunking import parse
    import retrieval.symbol_context as sc
    from retrieval.focus import focus
    from retrieval.outline import outline
    from retrieval.symbol_context import _trees as trees
    from retrieval.symbol_context import resolve
    from retrieval.symbol_table import open_table, update_symbols
    import retrieval.ingest as ingest

    out: dict = {"definitions_target": n_defs}
    paths, _ = registry.create_tenant(f"bench-symbols-{n_defs}")
    files = symbol_files(n_defs)
    t = time.perf_counter()
    u = update_symbols(paths, "main", files)
    out |= {"files": len(files), "definitions": u.definitions, "build_s": round(time.perf_counter() - t, 2)}
    table = open_table(paths)

    # single lookups: an exact name, a 4-character prefix, a class's members
    rng = random.Random(0)
    sample = [d for d in table._defs("d.rowid % 97 = 0", ())]
    names = [d.name for d in rng.sample(sample, min(300, len(sample)))]
    containers = [d.container for d in sample if d.container][:300]
    for label, fn, args in (("named", table.named, names), ("prefix", table.with_prefix, [n[:4] for n in names]),
                            ("members", table.members, containers)):
        ts = []
        for a in args:
            t = time.perf_counter()
            fn(a)
            ts.append(time.perf_counter() - t)
        out[f"lookup_{label}"] = {"p50_ms": pct(ts, 50), "p95_ms": pct(ts, 95)}

    # full resolution at cursors of 2,000-line files: parse prefix+suffix, then the lookups
    big = [sf for sf in files if sf.text.count("\n") >= 2000 and not sf.path.startswith("copy")]
    texts = [(sf.path, "\n".join(sf.text.split("\n")[:2000])) for sf in big]
    timed = _TimedTable(table)
    lookups, lookups_cpu, picked, typing, typing_cpu = [], [], [], [], []
    variants = ("focus", "outline", "whole")
    cold = {v: ([], []) for v in variants}   # wall, CPU
    for i in range(cursors):
        path, text = texts[i % len(texts)]
        lines = text.split("\n")
        line = rng.randrange(200, 2000)
        col = rng.randrange(0, len(lines[line - 1]) + 1)
        offset = sum(len(x) + 1 for x in lines[:line - 1]) + col
        # cold: the file's first request (no earlier parse of it to re-use); side by side, in
        # rotating order, the same request focused on the cursor (the product), through the
        # whole file's outline, and with the whole text parsed
        for variant in variants[i % 3:] + variants[:i % 3]:
            trees.clear()
            timed.seconds = timed.cpu_seconds = 0.0
            sc.focus = focus if variant == "focus" else (lambda *a, **k: None)
            sc.outline = (lambda text, language: None) if variant == "whole" else outline
            t, c = time.perf_counter(), time.thread_time()
            got = resolve(timed, path, text[:offset], text[offset:])
            cold[variant][0].append(time.perf_counter() - t)
            cold[variant][1].append(time.thread_time() - c)
            sc.focus, sc.outline = focus, outline
            if variant == "focus":
                lookups.append(timed.seconds)
                lookups_cpu.append(timed.cpu_seconds)
                picked.append(len(got))
        # editing: the next keystrokes at the same cursor, each a new request, from the state
        # the file's first request leaves a server in (not the whole-text variant's)
        prefix, suffix = text[:offset], text[offset:]
        trees.clear()
        resolve(table, path, prefix, suffix)
        for ch in "self.":
            prefix += ch
            t, c = time.perf_counter(), time.thread_time()
            resolve(table, path, prefix, suffix)
            typing.append(time.perf_counter() - t)
            typing_cpu.append(time.thread_time() - c)
    out["file_lines"] = 2000
    out["files_2000_lines"] = len(texts)
    # wall time, and the thread's CPU time: on a shared machine the difference is time spent
    # preempted by other processes, which an idle serving host does not pay
    for variant, key in (("focus", "resolution_full_cold"), ("outline", "resolution_full_cold_outline_only"),
                         ("whole", "resolution_full_cold_whole_text_parse")):
        wall, cpu = cold[variant]
        out[key] = {"p50_ms": pct(wall, 50), "p95_ms": pct(wall, 95), "cursors": cursors,
                    "cpu_p50_ms": pct(cpu, 50), "cpu_p95_ms": pct(cpu, 95)}
    out["resolution_lookups"] = {"p50_ms": pct(lookups, 50), "p95_ms": pct(lookups, 95),
                                 "cpu_p50_ms": pct(lookups_cpu, 50), "cpu_p95_ms": pct(lookups_cpu, 95)}
    out["resolution_full_editing"] = {"p50_ms": pct(typing, 50), "p95_ms": pct(typing, 95),
                                      "requests": len(typing), "cpu_p50_ms": pct(typing_cpu, 50),
                                      "cpu_p95_ms": pct(typing_cpu, 95)}
    parse_ts = []
    for path, text in texts:
        for _ in range(5):
            t = time.perf_counter()
            parse(path, "python", text)
            parse_ts.append(time.perf_counter() - t)
    out["parse_2000_lines"] = {"p50_ms": pct(parse_ts, 50), "p95_ms": pct(parse_ts, 95)}
    outline_ts, outline_parse_ts, shares = [], [], []
    for path, text in texts:
        for _ in range(5):
            t = time.perf_counter()
            short = outline(text, "python")
            outline_ts.append(time.perf_counter() - t)
            t = time.perf_counter()
            parse(path, "python", short.text if short else text)
            outline_parse_ts.append(time.perf_counter() - t)
        shares.append(len(short.text) / len(text) if short else 1.0)
    out["outline_2000_lines"] = {"build_p50_ms": pct(outline_ts, 50), "build_p95_ms": pct(outline_ts, 95),
                                 "parse_p50_ms": pct(outline_parse_ts, 50), "parse_p95_ms": pct(outline_parse_ts, 95),
                                 "text_share_mean": round(sum(shares) / len(shares), 3)}
    out["definitions_picked_mean"] = round(sum(picked) / len(picked), 2)

    # index time the table adds: a real repository indexed whole, the table's share of it
    spent = []
    original = ingest.update_symbols

    def timed_update(*a, **k):
        t = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent.append(time.perf_counter() - t)

    ingest.update_symbols = timed_update
    try:
        rpaths, _ = registry.create_tenant("bench-symbols-repo")
        work = Path(tempfile.mkdtemp()) / "repo"
        shutil.copytree(repo, work, ignore=shutil.ignore_patterns("__pycache__"))
        s = index_source(settings, rpaths, work)
    finally:
        ingest.update_symbols = original
    out["repo_index"] = {"repo": str(repo), "files": s["files_indexed"], "index_s": s["seconds"],
                         "embed_s": s["embed_seconds"], "symbols_s": round(spent[0], 3),
                         "symbols_share": round(spent[0] / s["seconds"], 4)}
    # the same files without embeddings: the table against chunking alone, side by side
    from retrieval.selection import select_files

    sel = select_files(work, Selection(), settings.retrieval)
    params = chunk_params(settings.retrieval)
    t = time.perf_counter()
    for sf in sel.files:
        file_chunks(sf, Selection(), settings.retrieval, params["mode"])
    chunk_s = time.perf_counter() - t
    spaths, _ = registry.create_tenant("bench-symbols-chunk")
    t = time.perf_counter()
    update_symbols(spaths, "main", sel.files)
    sym_s = time.perf_counter() - t
    out["vs_chunking"] = {"files": len(sel.files), "chunking_s": round(chunk_s, 3), "symbols_s": round(sym_s, 3),
                          "ratio": round(sym_s / chunk_s, 2) if chunk_s else None}
    return out


def segment_cost(n: int, k: int, queries: int = 100) -> dict:
    """BM25 time per query over n stdlib windows as one segment and as k equal segments: each
    segment scored on its own (a one-segment table each) against the joined table
    searches read (retrieval/postings.py)."""
    from retrieval.postings import Postings, top_rows
    from retrieval.segments import load_segment, write_segment
    from retrieval.tokens import code_tokens

    rows = stdlib_rows(n)
    work = Path(tempfile.mkdtemp(prefix="ct-segments-"))
    layouts = {"one": [rows], f"{k}": [rows[i * n // k:(i + 1) * n // k] for i in range(k)]}
    out = {"chunks": n}
    qs = [code_tokens("\n".join(r["text"].splitlines()[:10])) for r in rows[::max(1, n // queries)]]
    for name, parts in layouts.items():
        segs = []
        for i, part in enumerate(parts):
            d = work / f"{name}-{i}"
            d.mkdir()
            write_segment(d, part)
            segs.append(load_segment(d, []))
        alone = [Postings([seg]) for seg in segs]
        t = time.perf_counter()
        for q in qs:
            for table in alone:
                top_rows(table.scores(q, ()), 50)
        out[f"{name}_segment_ms_per_query"] = round((time.perf_counter() - t) * 1000 / len(qs), 2)
        joined = Postings(segs)
        t = time.perf_counter()
        for q in qs:
            joined.top(q, 50)
        out[f"{name}_joined_ms_per_query"] = round((time.perf_counter() - t) * 1000 / len(qs), 2)
    shutil.rmtree(work, ignore_errors=True)
    out["load"] = os.getloadavg()[0]
    return out


def encoders(home: Path, repo: Path, names: list[str], threads: list[int], cases: int) -> list[dict]:
    """Each encoder at each thread count, side by side on the same repository: the index run's
    embedding rate and the held-out lines' hit rates (each index embeds with its own encoder)."""
    rows = []
    for name in names:
        for t in threads:
            settings = load_settings(home=home, retrieval={"encoder": name, "embed_threads": t})
            registry = registry_from_settings(settings)
            load = os.getloadavg()[0]
            index, paths, work = throughput(settings, registry, repo, tenant=f"enc-{name.replace('-', '')}-t{t}")
            q = quality(settings, paths, work, cases)
            from retrieval.segments import read_manifest

            rows.append({"encoder": read_manifest(paths)["encoder"], "threads": t,
                         "chunks": index["chunks"], "embed_chunks_per_s": index["embed_chunks_per_s"],
                         "hit_rate": q["hit_rate"], "cases": q["cases"],
                         "load_avg_before": load, "load_avg_after": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def tree_texts(root: Path, n: int, suffixes=(".c", ".h", ".py")) -> list[str]:
    """The embedding texts of the first `n` 20-line windows of `root`'s C and Python files in path
    order, as the indexer cuts files without a syntax grammar."""
    from retrieval.chunking import chunk_text
    from retrieval.embed import embedding_text

    texts = []
    for f in sorted(p for p in root.rglob("*") if p.suffix in suffixes and p.is_file()):
        rel = str(f.relative_to(root))
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for c in chunk_text(rel, "c", text, "lines", chunk_lines_n=20, overlap=5):
            texts.append(embedding_text(c.path, None, c.text))
            if len(texts) == n:
                return texts
    return texts


def encode_rate(names: list[str], root: Path, n: int) -> list[dict]:
    """Each encoder's chunks/s on the first `n` windows of `root`, in the indexer's groups of
    embed_batch_size * 8 texts, model loaded beforehand (no store: the encoder alone)."""
    from retrieval.embed import embed, prepare

    texts = tree_texts(root, n)
    rows = []
    for name in names:
        settings = load_settings(home=Path(tempfile.mkdtemp(prefix="ct-bench-")), retrieval={"encoder": name})
        cfg = settings.retrieval
        encoder = prepare(settings)
        embed(settings, encoder, texts[:8], cfg.embed_batch_size, threads=cfg.embed_threads)   # load
        load, t0 = os.getloadavg()[0], time.perf_counter()
        group = cfg.embed_batch_size * 8
        for i in range(0, len(texts), group):
            embed(settings, encoder, texts[i:i + group], cfg.embed_batch_size, threads=cfg.embed_threads)
        seconds = time.perf_counter() - t0
        rows.append({"encoder": encoder, "chunks": len(texts), "seconds": round(seconds, 2),
                     "chunks_per_s": round(len(texts) / seconds, 1), "threads": cfg.embed_threads,
                     "load_avg_before": load, "load_avg_after": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(sys.prefix) / "lib/python3.11/site-packages/pathspec"))
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--quality-cases", type=int, default=200)
    ap.add_argument("--skip-repo", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--symbols", action="store_true", help="only the symbol-table benchmark")
    ap.add_argument("--symbol-defs", type=int, default=100000)
    ap.add_argument("--symbol-repo", default=None, help="repository indexed for the table's share (default: --repo)")
    ap.add_argument("--segment-cost", metavar="N,K", help="only: BM25 query time over N chunks, one segment vs K")
    ap.add_argument("--encoders", metavar="E,E", help="only: index --repo with each encoder (torch, onnx-int8, static) at "
                    "each of --embed-threads, embedding rate and hit rates side by side")
    ap.add_argument("--embed-threads", default="1,2", help="with --encoders: thread counts")
    ap.add_argument("--encode-rate", metavar="N", type=int, help="with --encoders: instead, each encoder's "
                    "chunks/s on the first N 20-line windows of --repo's C and Python files")
    args = ap.parse_args()
    if args.encoders and args.encode_rate:
        report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repo": args.repo,
                  "encode_rate": encode_rate(args.encoders.split(","), Path(args.repo), args.encode_rate)}
        print(json.dumps(report, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        return
    if args.encoders:
        home = Path(tempfile.mkdtemp(prefix="ct-bench-"))
        report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repo": args.repo,
                  "encoders": encoders(home, Path(args.repo), args.encoders.split(","),
                                       [int(x) for x in args.embed_threads.split(",")], args.quality_cases)}
        print(json.dumps(report, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        shutil.rmtree(home, ignore_errors=True)
        return
    if args.segment_cost:
        n, k = (int(x) for x in args.segment_cost.split(","))
        print(json.dumps(segment_cost(n, k)))
        return
    home = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    settings = load_settings(home=home)
    registry = registry_from_settings(settings)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {os.cpu_count()} cores "
              f"{platform.processor() or ''}".strip(), "python": platform.python_version()}
    if args.symbols:
        report["load_avg_before"] = os.getloadavg()
        report["symbols"] = symbols(settings, registry, args.symbol_defs, args.queries,
                                    Path(args.symbol_repo or args.repo))
        report["load_avg_after"] = os.getloadavg()
        args.sizes, args.skip_repo = "", True
    if not args.skip_repo:
        report["index"], paths, work = throughput(settings, registry, Path(args.repo))
        print(json.dumps(report["index"]), flush=True)
        report["quality"] = quality(settings, paths, work, args.quality_cases)
        print(json.dumps(report["quality"]), flush=True)
    report["latency"] = []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        report["latency"].append(latency(settings, registry, n, args.queries))
        print(json.dumps(report["latency"][-1]), flush=True)
    publish(report, args.out)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
