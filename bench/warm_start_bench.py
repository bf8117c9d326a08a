"""Warm start: does continuing the active adapter beat a cold start of the same budget after a change?

A tenant's repository (Python standard-library packages, ~--bytes) trains adapter v1 for --budget
seconds. Then about --change of the code changes (modules of another package are added), and two
adapters train for --retrain-budget seconds each: one warm-started from v1 (what `codetailor refresh`
does), one cold. Both are scored on the same held-out files (the split is by path and seeded); with
--eval-n, `codetailor eval` (systems base,ft) runs on each as well.

    flock /tmp/codetailor-heavy.lock .venv/bin/python bench/warm_start_bench.py --out /tmp/warm.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_options, publish  # noqa: E402

BASE = ("json", "email", "http", "logging", "urllib", "concurrent", "importlib")
ADDED = ("asyncio",)


def copy_packages(dest: Path, packages, budget: int) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for pkg in packages:
        for f in sorted((stdlib / pkg).rglob("*.py")):
            if total >= budget:
                return total
            if "test" in f.parts or "__pycache__" in f.parts:
                continue
            out = dest / f.relative_to(stdlib)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
            total += f.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(ap, bytes=150_000, change=0.05, budget=90.0, retrain_budget=45.0, eval_n=0)
    ap.add_argument("--base", help="base model checkpoint directory (default: model.base of the config)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="warm-bench-"))
    os.environ["CODETAILOR_HOME"] = str(root / "home")
    os.environ.pop("CODETAILOR_CONFIG", None)
    if args.base:
        os.environ["CODETAILOR_MODEL__BASE"] = str(Path(args.base).resolve())
    from codetailor.config import get_settings
    from codetailor.tenants import registry_from_settings
    from training import TrainOptions, train_tenant

    settings = get_settings()
    registry = registry_from_settings(settings)
    paths, _ = registry.create_tenant("bench")
    repo = root / "repo"
    size = copy_packages(repo, BASE, args.bytes)
    registry.add_source(paths.tenant, "main", str(repo))
    t = settings.training

    def train(budget: float, warm: str | None) -> dict:
        t0 = time.time()
        out = train_tenant(settings, paths, TrainOptions(rank=t.rank, alpha=t.alpha, epochs=t.epochs,
                                                         time_budget=budget, replay_ratio=t.replay_ratio,
                                                         progress=False, warm_start=warm))
        out["wall_s"] = round(time.time() - t0, 1)
        return out

    result = {"repository_bytes": size, "v1": train(args.budget, None)}
    added = copy_packages(repo, ADDED, int(size * args.change))
    result["changed_bytes"] = added
    result["warm"] = train(args.retrain_budget, result["v1"]["adapter_version"])
    result["cold"] = train(args.retrain_budget, None)
    if args.eval_n:
        from evaluation import evaluate, public_summary

        for kind in ("warm", "cold"):
            r = public_summary(evaluate(settings, paths, systems="base,ft", n=args.eval_n,
                                        adapter=result[kind]["adapter_version"], progress=False))
            result[kind]["eval"] = {"exact_match": {s: m.get("exact_match") for s, m in r["systems"].items()},
                                    "cqi": r.get("cqi"), "n": r["n"]}
    result.update(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load=os.getloadavg(),
                  cores=os.cpu_count())
    shutil.rmtree(root, ignore_errors=True)
    publish(result, args.out)


if __name__ == "__main__":
    main()
