"""Indexing at scale: time to the first BM25 search, peak RSS against source size, embedding rate,
and hybrid latency over the resulting index (real chunks; the vectors embedded in the time given).

    .venv/bin/python bench/index_scale_bench.py --repo PATH [--sizes 1000,4000,0] [--embed-seconds 120]
        [--queries 200] [--json out.json] [--keep]
    .venv/bin/python bench/index_scale_bench.py --repo PATH --latency-home KEPT/home-N --queries 200

For each size N (0 = the whole tree) the first N files of the tree (sorted walk) are copied to a
temporary folder, a fresh home gets a tenant, and `codetailor index --defer-embedding --json` runs as
its own process: its wall time, its peak RSS (wait4) and the summary; then `codetailor search --mode
bm25` runs as another process (the first search: import, load, query). On the largest size,
`codetailor index --embed-pending --max-seconds S` measures the embedding rate (and its peak RSS), and
hybrid/BM25 latency is timed in process over `--queries` queries drawn from the indexed chunks, with
the query embeddings computed beforehand (timed separately). The full-hybrid time is extrapolated from
the measured rate when the budget ends before every chunk is embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measured(home: Path, *args: str) -> tuple[dict | None, float, float]:
    """(JSON, wall s, peak RSS MiB) of `codetailor ARGS` run as a fresh child, via wait4."""
    env = {**os.environ, "CODETAILOR_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("CODETAILOR_CONFIG", None)
    out_file = tempfile.TemporaryFile(mode="w+")
    err_file = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "codetailor", *args], stdout=out_file, stderr=err_file,
                            env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        raise SystemExit(f"codetailor {' '.join(args)} failed ({proc.returncode}): {err.strip()[-800:]}")
    return (json.loads(out) if out.strip() else None), wall, usage.ru_maxrss / 1024


def copy_tree(src: Path, dst: Path, limit: int) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            s = Path(dirpath) / name
            if s.is_symlink() or not s.is_file():
                continue
            d = dst / s.relative_to(src)
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, d)
            n += 1
            if limit and n >= limit:
                return n
    return n


def pct(xs, p):
    return round(float(np.percentile(np.asarray(xs) * 1000, p)), 3)


def latency(home: Path, tenant: str, queries: int) -> dict:
    os.environ["CODETAILOR_HOME"] = str(home)
    from codetailor.config import get_settings
    from codetailor.tenants import registry_from_settings
    from retrieval import search
    from retrieval.embed import embed, prepare
    from retrieval.search import load_state

    settings = get_settings()
    paths = registry_from_settings(settings).tenant(tenant)
    state = load_state(paths)
    rng = random.Random(0)
    rows = [r for seg in state.segments for r in seg.rows]
    picks = [rows[rng.randrange(len(rows))] for _ in range(queries)]
    texts = ["\n".join(r["text"].splitlines()[:10]) or r["path"] for r in picks]
    # the encoder that built the index's vectors (queries embed with it); before any, the configured one
    encoder = state.manifest.get("encoder") or prepare(settings)
    t0 = time.perf_counter()
    emb = []
    for t in texts:
        s = time.perf_counter()
        emb.append(embed(settings, encoder, [t], threads=settings.retrieval.embed_threads)[0])
        emb[-1] = (emb[-1], time.perf_counter() - s)
    search(settings, paths, texts[0], mode="hybrid", query_vector=emb[0][0])   # warm
    bm, hy = [], []
    for t, (v, _) in zip(texts, emb):
        s = time.perf_counter()
        search(settings, paths, t, mode="bm25", top_k=5)
        bm.append(time.perf_counter() - s)
        s = time.perf_counter()
        search(settings, paths, t, mode="hybrid", top_k=5, query_vector=v)
        hy.append(time.perf_counter() - s)
    e = [d for _, d in emb]
    return {"queries": queries, "chunks": len(state.by_id), "vectors_pending": len(state.manifest["pending_ids"]),
            "bm25_p50_ms": pct(bm, 50), "bm25_p95_ms": pct(bm, 95),
            "hybrid_p50_ms": pct(hy, 50), "hybrid_p95_ms": pct(hy, 95),
            "query_embedding_p50_ms": pct(e, 50), "query_embedding_p95_ms": pct(e, 95),
            "embedding_seconds_total": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--sizes", default="1000,4000,0", help="files per run; 0 = the whole tree")
    ap.add_argument("--embed-seconds", type=float, default=120.0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary trees and homes (their path is printed)")
    ap.add_argument("--latency-home", help="only time queries over the tenant `bench` of this (kept) home")
    a = ap.parse_args()
    if a.latency_home:
        print(json.dumps(latency(Path(a.latency_home), "bench", a.queries), indent=2))
        return
    src = Path(a.repo).resolve()
    out = {"repo": str(src), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": []}
    work = Path(tempfile.mkdtemp(prefix="index-scale-"))
    try:
        sizes = [int(x) for x in a.sizes.split(",")]
        last_home = None
        for size in sizes:
            tree, home = work / f"tree-{size}", work / f"home-{size}"
            n = copy_tree(src, tree, size)
            measured(home, "tenant", "create", "bench", "--json")
            summary, wall, rss = measured(home, "index", "--tenant", "bench", str(tree), "--defer-embedding",
                                          "--json")
            hits, search_wall, search_rss = measured(home, "search", "--tenant", "bench", "--mode", "bm25",
                                                     "--query", "def forward self input", "--json")
            run = {"files_copied": n, "files_seen": summary["files_seen"], "files_indexed": summary["files_indexed"],
                   "chunks": summary["chunks"], "skipped": summary["skipped"],
                   "index_wall_s": round(wall, 2), "searchable_seconds": summary.get("searchable_seconds"),
                   "index_peak_rss_mib": round(rss, 1), "first_bm25_search_wall_s": round(search_wall, 2),
                   "search_peak_rss_mib": round(search_rss, 1),
                   "time_to_first_bm25_search_s": round(wall + search_wall, 2),
                   "secret_prefilter_cleared": summary.get("secret_prefilter_cleared")}
            print(json.dumps(run), file=sys.stderr, flush=True)
            out["runs"].append(run)
            last_home = home
        if a.embed_seconds > 0:
            done, wall, rss = measured(last_home, "index", "--tenant", "bench", "--embed-pending",
                                       "--max-seconds", str(a.embed_seconds), "--json")
            rate = done["chunks_embedded"] / max(done["embed_seconds"], 1e-9)
            total = out["runs"][-1]["chunks"]
            out["embedding"] = {"chunks_embedded": done["chunks_embedded"], "embed_seconds": done["embed_seconds"],
                                "vector_index_seconds": done.get("vector_index_seconds"),
                                "chunks_per_s": round(rate, 2), "vectors_pending": done["vectors_pending"],
                                "peak_rss_mib": round(rss, 1), "wall_s": round(wall, 1),
                                "full_hybrid_extrapolated_s": round(out["runs"][-1]["time_to_first_bm25_search_s"]
                                                                    + total / rate, 0)}
            print(json.dumps(out["embedding"]), file=sys.stderr, flush=True)
        if a.queries:
            out["latency"] = latency(last_home, "bench", a.queries)
        out["load"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
