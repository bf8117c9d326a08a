"""File selection throughput (listing, safety skips, secret scan) on a real tree.

    .venv/bin/python bench/selection_bench.py [--repo PATH] [--workers 0] [--json out.json]
    .venv/bin/python bench/selection_bench.py --check-prefilter 3   # every 3rd .py: prefilter vs full scan
    .venv/bin/python bench/selection_bench.py --check-prefilter 8 --pattern '*.[ch]' --repo linux-source-6.1

Default tree: a copy of this Python's standard library (public code nobody here wrote).
Reports files/s and how many files the secret prefilter cleared without the full
detect-secrets scan. Nothing is indexed or embedded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("SELECTION_BENCH_CODE", str(Path(__file__).resolve().parents[1])))


def check_prefilter(root: Path, step: int, pattern: str) -> None:
    from retrieval.secrets_scan import has_secret, may_hold_secret

    files = sorted(p for p in root.rglob(pattern) if "site-packages" not in p.parts and p.is_file())[::step]
    t_pre = t_full = 0.0
    flagged = secrets = missed = 0
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        t0 = time.perf_counter()
        maybe = may_hold_secret(p.name, text)
        t1 = time.perf_counter()
        secret = has_secret(p)
        t_pre, t_full = t_pre + t1 - t0, t_full + time.perf_counter() - t1
        flagged, secrets = flagged + maybe, secrets + secret
        missed += secret and not maybe
    n = len(files)
    print(json.dumps({"files": n, "need_full_scan": flagged, "share": round(flagged / n, 3), "secrets": secrets,
                      "cleared_but_secret": missed, "prefilter_ms_per_file": round(1000 * t_pre / n, 2),
                      "full_scan_ms_per_file": round(1000 * t_full / n, 1),
                      "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=sysconfig.get_paths()["stdlib"])
    ap.add_argument("--workers", type=int, default=0, help="secret_scan_workers (0: every usable core)")
    ap.add_argument("--json")
    ap.add_argument("--check-prefilter", type=int, metavar="STEP",
                    help="instead: run the prefilter and the full scan on every STEP-th file and compare")
    ap.add_argument("--pattern", default="*.py", help="files --check-prefilter takes (a glob)")
    a = ap.parse_args()
    if a.check_prefilter:
        return check_prefilter(Path(a.repo), a.check_prefilter, a.pattern)

    from codetailor.config import RetrievalConfig
    from retrieval.selection import Selection, select_files

    work = Path(tempfile.mkdtemp()) / "tree"
    shutil.copytree(a.repo, work, ignore=shutil.ignore_patterns("__pycache__", "site-packages"), symlinks=True)
    try:
        cfg = RetrievalConfig(secret_scan_workers=a.workers) if "secret_scan_workers" in RetrievalConfig.model_fields \
            else RetrievalConfig()
        t0 = time.perf_counter()
        r = select_files(work, Selection(), cfg)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(work.parent, ignore_errors=True)
    out = {"repo": a.repo, "files_seen": r.files_seen, "files_selected": len(r.files),
           "skipped": dict(sorted(r.skipped.items())), "seconds": round(seconds, 2),
           "files_per_s": round(r.files_seen / seconds, 1), "selected_per_s": round(len(r.files) / seconds, 1),
           "workers": a.workers, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
