"""Sync benchmark: how long `codetailor refresh` takes to follow a repository.

A ~1 MB repository (Python standard-library modules, committed once) is connected
to a fresh tenant by file:// URL and indexed by a first refresh. Then, each
repeated --repeat times:

- no change, cold CLI: `codetailor refresh --index-only --json` in a new process
  (the remote's commit is compared before anything heavy is imported);
- one-file push, cold CLI: one module gains a function, is pushed, and a new
  process refreshes (fetch + incremental re-index, loading the embedder);
- one-file push, warm: the same inside one process that has refreshed before
  (the embedder already loaded), as `codetailor serve --refresh-interval` runs it.

    flock /tmp/codetailor-heavy.lock .venv/bin/python bench/sync_bench.py --out /tmp/sync.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_options, publish  # noqa: E402

PACKAGES = ("json", "asyncio", "email", "http", "logging", "unittest", "xml", "importlib", "concurrent", "urllib")


def _git(cwd, *args):
    from retrieval.git import run_git   # the one place git runs, even for the bench's own repositories

    run_git(cwd, *args)


def make_repo(root: Path, target_bytes: int) -> tuple[Path, Path, int]:
    """(work tree, bare repository, bytes of code) of about `target_bytes` of stdlib Python."""
    from warm_start_bench import copy_packages   # this folder is on sys.path when run as a script

    work, bare = root / "work", root / "upstream.git"
    total = copy_packages(work, PACKAGES, target_bytes)
    _git(root, "init", "-q", "-b", "main", str(work))
    _git(work, "add", "-A")
    _git(work, "-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-qm", "import")
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    return work, bare, total


def push_one_file(work: Path, bare: Path, i: int) -> None:
    f = work / "json" / "encoder.py"
    f.write_text(f.read_text() + f"\n\ndef bench_helper_{i}(value):\n    return encode_basestring(str(value))\n")
    _git(work, "-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-qam", f"push {i}")
    _git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")


def cli(env, *args) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "codetailor", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"codetailor {' '.join(args)} failed: {r.stderr}")
    return seconds, json.loads(r.stdout) if r.stdout.strip() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(ap, bytes=1_000_000, repeat=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    home = root / "home"
    env = {**os.environ, "CODETAILOR_HOME": str(home)}
    env.pop("CODETAILOR_CONFIG", None)
    work, bare, size = make_repo(root, args.bytes)
    cli(env, "tenant", "create", "bench", "--json")
    cli(env, "source", "add", "--tenant", "bench", "lib", f"file://{bare}", "--json")
    refresh = ("refresh", "--tenant", "bench", "--index-only", "--json", "--quiet")

    first, out = cli(env, *refresh)
    result = {"repository_bytes": size, "files_indexed": out["sources"][0]["index"]["files_indexed"],
              "first_refresh_s": round(first, 2)}
    no_change = [cli(env, *refresh)[0] for _ in range(args.repeat)]
    cold = []
    for i in range(args.repeat):
        push_one_file(work, bare, i)
        seconds, out = cli(env, *refresh)
        assert out["sources"][0]["status"] == "updated", out
        cold.append(seconds)

    os.environ["CODETAILOR_HOME"] = str(home)
    os.environ.pop("CODETAILOR_CONFIG", None)
    from codetailor.config import get_settings
    from codetailor.refresh import refresh_tenant
    from codetailor.tenants import registry_from_settings

    settings = get_settings()
    paths = registry_from_settings(settings).tenant("bench")
    push_one_file(work, bare, 100)
    refresh_tenant(settings, paths, index_only=True, progress=False)   # loads the embedder once
    warm = []
    for i in range(args.repeat):
        push_one_file(work, bare, 101 + i)
        t = time.perf_counter()
        out = refresh_tenant(settings, paths, index_only=True, progress=False)
        warm.append(time.perf_counter() - t)
        assert out["sources"][0]["status"] == "updated", out

    result.update({
        "no_change_cold_cli_s": [round(x, 3) for x in no_change],
        "one_file_push_cold_cli_s": [round(x, 3) for x in cold],
        "one_file_push_warm_s": [round(x, 3) for x in warm],
        "median": {"no_change_cold_cli_s": round(statistics.median(no_change), 3),
                   "one_file_push_cold_cli_s": round(statistics.median(cold), 3),
                   "one_file_push_warm_s": round(statistics.median(warm), 3)},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load": os.getloadavg(),
        "transport": "file:// (local bare repository)",
    })
    shutil.rmtree(root, ignore_errors=True)
    publish(result, args.out)


if __name__ == "__main__":
    main()
