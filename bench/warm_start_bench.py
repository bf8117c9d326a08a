"""Warm start: does continuing the active adapter beat a cold start of the same budget after a change?

A tenant's repository (Python standard-library packages, ~--bytes) trains adapter v1 for --budget
seconds. Then about --change of the code changes (modules of another package are added), and two
adapters train for --retrain-budget seconds each: one warm-started from v1 (what `codetailor refresh`
does), one cold. Both are scored on the same held-out files (the split is by path and seeded); with
--eval-n, the evaluation (systems base,ft) runs on each as well, both through one engine, and the
held-out exact match of the two adapters is compared task by task (the same tasks for both).

    flock /tmp/codetailor-heavy.lock .venv/bin/python bench/warm_start_bench.py --out /tmp/warm.json
"""

from __future__ import annotations

import argparse
import json
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
    """Copy the packages' modules in order, skipping any that would pass `budget` bytes (one large
    module must not turn a 5 % change into a 50 % one)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for pkg in packages:
        for f in sorted((stdlib / pkg).rglob("*.py")):
            if "test" in f.parts or "__pycache__" in f.parts or total + f.stat().st_size > budget:
                continue
            out = dest / f.relative_to(stdlib)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
            total += f.stat().st_size
    return total


def say(message: str) -> None:
    print(f"warm-start bench: {message}", file=sys.stderr, flush=True)


def evaluate_both(settings, paths, result: dict, n: int) -> dict:
    """Evaluate the warm and the cold adapter on the same held-out tasks with one engine; EM of each
    and the paired count of tasks each one alone gets exactly right."""
    from evaluation.evaluate import Plan, public_summary, run_plans
    from evaluation.metrics import exact_match

    plans = {kind: Plan(settings, paths, "base,ft", n, result[kind]["adapter_version"]) for kind in ("warm", "cold")}
    runs = run_plans(settings, plans, on_start=lambda kind, plan: say(
        f"evaluating the {kind} adapter on {n} held-out tasks"))
    for kind, r in runs.items():
        s = public_summary(r)
        result[kind]["eval"] = {"exact_match": {k: m.get("exact_match") for k, m in s["systems"].items()},
                                "edit_similarity": {k: m.get("edit_similarity") for k, m in s["systems"].items()},
                                "cqi": s.get("cqi"), "n": s["n"], "seconds": s.get("seconds")}
        say(f"{kind}: {json.dumps(result[kind]['eval']['exact_match'])}")
    warm, cold = ([row for row in runs[k]["tasks"]] for k in ("warm", "cold"))
    same = [w["id"] for w in warm] == [c["id"] for c in cold]
    paired = None
    if same:
        em = [(exact_match(w["predictions"]["ft"], w["target"]), exact_match(c["predictions"]["ft"], c["target"]))
              for w, c in zip(warm, cold)]
        paired = {"warm_only": sum(1 for a, b in em if a > b), "cold_only": sum(1 for a, b in em if b > a),
                  "both": sum(1 for a, b in em if a and b)}
    return {"same_tasks": same, "paired_exact_match": paired}


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

    say(f"training v1 for {args.budget:g} s on {size} bytes")
    result = {"repository_bytes": size, "v1": train(args.budget, None)}
    added = copy_packages(repo, ADDED, int(size * args.change))
    result["changed_bytes"] = added
    say(f"changed {added} bytes; training warm and cold for {args.retrain_budget:g} s each")
    result["warm"] = train(args.retrain_budget, result["v1"]["adapter_version"])
    say(f"warm: {json.dumps({k: result['warm'].get(k) for k in ('train_tokens', 'heldout_loss')})}")
    result["cold"] = train(args.retrain_budget, None)
    say(f"cold: {json.dumps({k: result['cold'].get(k) for k in ('train_tokens', 'heldout_loss')})}")
    if args.eval_n:
        result.update(evaluate_both(settings, paths, result, args.eval_n))
    result.update(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load=os.getloadavg(),
                  cores=os.cpu_count())
    shutil.rmtree(root, ignore_errors=True)
    publish(result, args.out)


if __name__ == "__main__":
    main()
