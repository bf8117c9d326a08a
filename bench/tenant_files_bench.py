"""Training's file-reading step: selecting again vs reading through the index.

    flock /tmp/codetailor-heavy.lock .venv/bin/python bench/tenant_files_bench.py [--packages asyncio,email,http]

Copies standard-library packages (about 1 MB of Python) into a temporary source,
indexes it once (real chunking, secret scan, BM25 and embeddings), then times, side by
side and alternating, what training does to get the tenant's files:

- select: the selection run again on every file (listing, safety skips, the secret scan)
  plus each file's chunks, as training did before it read through the index;
- index: retrieval.files.tenant_files, which reads each file the manifest names and
  checks its content sha256.

Prints one JSON object (best and median of the repeats, in seconds).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codetailor.config import load_settings  # noqa: E402
from codetailor.tenants import registry_from_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", default="asyncio,email,http")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from retrieval import Selection, index_source, iter_selected_files
    from retrieval.files import tenant_files

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        for pkg in args.packages.split(","):
            shutil.copytree(stdlib / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        size = sum(p.stat().st_size for p in root.rglob("*.py"))
        settings = load_settings(home=Path(tmp) / "home")
        registry = registry_from_settings(settings)
        paths, _ = registry.create_tenant("bench")
        t0 = time.perf_counter()
        summary = index_source(settings, paths, root)
        index_s = time.perf_counter() - t0

        def select():
            return [(sf.path, sf.text, chunks) for sf, chunks in iter_selected_files(root, Selection(),
                                                                                   settings.retrieval)]

        def through_index():
            return [(f.path, f.text) for f in tenant_files(settings, paths)]

        times = {"select": [], "index": []}
        for _ in range(args.repeats):
            for name, fn in (("select", select), ("index", through_index)):
                t = time.perf_counter()
                out = fn()
                times[name].append(time.perf_counter() - t)
                assert len(out) == summary["files_indexed"], (name, len(out))
        print(json.dumps({
            "packages": args.packages, "python_bytes": size, "files": summary["files_indexed"],
            "chunks": summary["chunks"], "index_seconds": round(index_s, 1),
            "select_best_s": round(min(times["select"]), 3), "select_median_s": round(statistics.median(times["select"]), 3),
            "index_best_s": round(min(times["index"]), 3), "index_median_s": round(statistics.median(times["index"]), 3),
            "speedup_median": round(statistics.median(times["select"]) / statistics.median(times["index"]), 1),
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        }, indent=2))


if __name__ == "__main__":
    main()
