"""Symbol context, measured: the same held-out tasks with and without `prompt.symbols`, paired.

One engine runs two evaluations of a tenant that is already indexed: `--systems` with
`prompt.symbols` off, then on (the tasks are the same: same split, seed and cutter). Per retrieval
system it reports exact match and internal-API usage, on api_args tasks and overall, off and on, and
the on − off difference with its paired-bootstrap 95 % interval (tasks resampled, both runs indexed
with the same rows). `prompt.symbols` goes on by default only if that interval of exact match on
api_args tasks lies above 0 on every repository measured (docs/models.md).

With `--adapter-off A --adapter-on B` the adapter systems (ft+rag) use adapter A in the run without
symbols and B in the run with them: B trained with `prompt.symbols` on, A without, same budget.

    flock /tmp/codetailor-heavy.lock .venv/bin/python bench/symbol_eval_bench.py --tenant mcp --n 200 \\
        --out /tmp/symbols-mcp.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import add_options, publish  # noqa: E402
from bench.machine import record  # noqa: E402


def say(message: str) -> None:
    print(f"symbol-eval bench: {message}", file=sys.stderr, flush=True)


def paired(off: list[dict], on: list[dict], system: str, *, kind: str | None, samples: int, seed: int) -> dict:
    """Exact match and internal-API usage of `system` without and with symbols on the same tasks,
    and the difference (on − off) with its paired-bootstrap 95 % interval."""
    from evaluation.cqi import interval, resampled_tasks

    rows = [(a, b) for a, b in zip(off, on) if kind is None or a["kind"] == kind]
    em = np.array([[a["exact_match"][system], b["exact_match"][system]] for a, b in rows], float)
    calls = np.array([[*a["api_calls"][system], *b["api_calls"][system]] for a, b in rows], float)
    idx = resampled_tasks(len(rows), samples, seed)
    out = {"n": len(rows), "exact_match_off": em[:, 0].mean(), "exact_match_on": em[:, 1].mean()}
    diff = em[:, 1] - em[:, 0]
    lo, hi = interval(diff[idx].mean(axis=1))
    out.update(exact_match_diff=diff.mean(), exact_match_diff_low=lo, exact_match_diff_high=hi,
               only_on=int((diff > 0).sum()), only_off=int((diff < 0).sum()))
    ref = calls[:, 1]   # the reference's internal-API calls (the same task in both runs)
    if ref.sum():
        usage_off, usage_on = calls[:, 0].sum() / ref.sum(), calls[:, 2].sum() / ref.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (calls[:, 2][idx].sum(axis=1) - calls[:, 0][idx].sum(axis=1)) / ref[idx].sum(axis=1)
        lo, hi = interval(boot[np.isfinite(boot)])
        out.update(api_usage_off=usage_off, api_usage_on=usage_on, api_usage_diff=usage_on - usage_off,
                   api_usage_diff_low=lo, api_usage_diff_high=hi, api_reference_calls=int(ref.sum()))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def definitions_shown(rows: list[dict], system: str) -> dict:
    kept = [len(r.get("definitions", {}).get(system, ())) for r in rows]
    dropped = [r.get("dropped_definitions", {}).get(system, 0) for r in rows]
    return {"tasks_with_definitions": sum(1 for k in kept if k), "mean_kept": round(float(np.mean(kept)), 2),
            "mean_dropped": round(float(np.mean(dropped)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenant", required=True)
    ap.add_argument("--systems", default="rag")
    ap.add_argument("--adapter-off", help="adapter of the adapter systems without symbols")
    ap.add_argument("--adapter-on", help="adapter of the adapter systems with symbols")
    add_options(ap, n=200, samples=2000, seed=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from codetailor.config import get_settings
    from codetailor.tenants import registry_from_settings
    from evaluation.evaluate import Plan, run_plans
    from evaluation.runner import uses_retrieval

    settings = get_settings()
    paths = registry_from_settings(settings).tenant(args.tenant)
    symbols_on = settings.model_copy(update={"prompt": settings.prompt.model_copy(update={"symbols": True})})
    symbols_off = settings.model_copy(update={"prompt": settings.prompt.model_copy(update={"symbols": False})})
    plans = {"off": Plan(symbols_off, paths, args.systems, args.n, args.adapter_off),
             "on": Plan(symbols_on, paths, args.systems, args.n, args.adapter_on)}
    t0 = time.time()
    runs = run_plans(settings, plans, on_start=lambda name, plan: say(
        f"evaluating {','.join(plan.systems)} with symbols {name} on {plan.n} held-out tasks"))
    off, on = runs["off"]["tasks"], runs["on"]["tasks"]
    if [r["id"] for r in off] != [r["id"] for r in on]:
        raise SystemExit("the two runs drew different tasks: nothing to pair")
    kinds = sorted({r["kind"] for r in off})
    result = {"tenant": args.tenant, "n": len(off), "eval_ids": {k: r["eval_id"] for k, r in runs.items()},
              "adapters": {"off": args.adapter_off, "on": args.adapter_on}, "split": runs["off"]["split"],
              "systems": {}}
    for system in (s for s in plans["on"].systems if uses_retrieval(s)):
        one = {"overall": paired(off, on, system, kind=None, samples=args.samples, seed=args.seed)}
        one.update({kind: paired(off, on, system, kind=kind, samples=args.samples, seed=args.seed)
                    for kind in kinds})
        one["definitions"] = definitions_shown(on, system)
        result["systems"][system] = one
        say(f"{system}: api_args EM {one.get('api_args', {}).get('exact_match_off')} -> "
            f"{one.get('api_args', {}).get('exact_match_on')}")
    result["base_exact_match"] = {k: r["systems"]["base"]["exact_match"] for k, r in runs.items()}
    result.update(seconds=round(time.time() - t0, 1), machine=record(), load=os.getloadavg())
    publish(result, args.out)


if __name__ == "__main__":
    main()
