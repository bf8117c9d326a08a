"""A small side-by-side probe of one model's prompt templates on one repository.

    .venv/bin/python bench/template_probe.py --model qwen2.5-coder-0.5b --repo DIR [--n 40] [--seed 0]
        [--templates text,native]

The same held-out tasks (evaluation.tasks, the product's task cutter) go through one in-process engine
once per template of the model's family (text and native), generic model, no retrieval, greedy; they are
scored with the product's scorer (evaluation.scoring). Prints exact match, edit similarity and identifier
match per template with the tasks' count, each task's exact match per template, and the paired
difference between templates with its bootstrap interval, as JSON. A probe: with n around 40 one task is 2.5 points, so
only a large gap means anything; the default template is decided at n >= 200 (docs/models.md).
The model comes from the home in CODETAILOR_HOME (fetched there with `codetailor model fetch NAME`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def repo_files(repo: Path) -> dict[str, str]:
    out = {}
    for p in sorted(repo.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        try:
            out[str(p.relative_to(repo))] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return out


def paired(exact: dict[str, list[float]], samples: int = 10_000, seed: int = 0) -> dict:
    """Each later template minus the first on the same tasks: mean exact-match difference with its
    paired-bootstrap 95 % interval (pool several repositories' `tasks` for a decision)."""
    import numpy as np

    from evaluation.cqi import interval, resampled_tasks

    names = list(exact)
    out = {}
    for name in names[1:]:
        d = np.array(exact[name], float) - np.array(exact[names[0]], float)
        lo, hi = interval(d[resampled_tasks(len(d), samples, seed)].mean(axis=1))
        out[f"{name} - {names[0]}"] = {"n": len(d), "exact_match_difference": round(float(d.mean()), 4),
                                       "low": round(lo, 4), "high": round(hi, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=1024, help="prompt budget in tokens")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--templates", default="", help="comma-separated layouts to run (default: all of the family)")
    args = ap.parse_args()

    from codetailor.config import load_settings
    from codetailor.model import prompt_template, resolve_base_model
    from codetailor.prompt_format import TEMPLATES
    from evaluation import scoring
    from evaluation.runner import run_systems
    from evaluation.tasks import internal_apis, make_tasks

    home = Path(os.environ.get("CODETAILOR_HOME", Path.home() / ".cache" / "codetailor" / "home"))
    settings = load_settings(home=home, model={"base": args.model}, prompt={"budget_tokens": args.budget},
                             engine={"dtype": args.dtype, "max_model_len": args.budget + 128, "enable_lora": False,
                                     "kv_cache_gib": 1, "max_num_seqs": 16})
    path = resolve_base_model(settings)
    files = repo_files(args.repo)
    keys = sorted(files)
    random.Random(args.seed).shuffle(keys)
    heldout = keys[: max(1, len(keys) // 5)]
    apis = internal_apis(files)
    tasks = make_tasks(files, heldout, apis, n=args.n, seed=args.seed)
    family = prompt_template(settings, path).family
    layouts = sorted((l for f, l in TEMPLATES if f == family), key=lambda l: (l != "text", l))   # text first: the reference
    if args.templates:
        layouts = [l for l in args.templates.split(",") if l in layouts]

    from engine.vllm_engine import VllmEngine

    engine = VllmEngine.start(settings, path)
    out = {"model": args.model, "repo": str(args.repo), "files": len(files), "heldout_files": len(heldout),
           "n": len(tasks), "budget": args.budget, "dtype": args.dtype, "machine": platform.machine(),
           "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "templates": {}}
    exact: dict[str, list[float]] = {}   # template -> exact match per task, in task order
    try:
        for layout in layouts:
            t = prompt_template(load_settings(home=home, model={"base": args.model},
                                              prompt={"template": layout, "budget_tokens": args.budget},
                                              engine=settings.engine.model_dump()), path)
            t0 = time.perf_counter()
            done = asyncio.run(run_systems(engine, tasks, ["base"], settings, repo=args.repo.name, template=t))
            seconds = time.perf_counter() - t0
            scores = scoring.score_all(tasks, done, apis)["base"]
            summary = scoring.summarise(scores)
            exact[t.name] = [s.exact_match for s in scores]
            out["templates"][t.name] = {
                "exact_match": round(summary["exact_match"], 3), "edit_similarity": round(summary["edit_similarity"], 3),
                "identifier_match": round(summary["identifier_match"], 3) if summary["identifier_match"] is not None else None,
                "mean_prompt_tokens": round(sum(c.prompt_tokens for c in done["base"]) / len(tasks), 1),
                "seconds": round(seconds, 1)}
            print(json.dumps({t.name: out["templates"][t.name]}), file=sys.stderr)
    finally:
        engine.close()
    out["load_after"] = os.getloadavg()[0]
    out["paired"] = paired(exact)
    out["tasks"] = [{"id": t.id, "exact_match": {name: em[i] for name, em in exact.items()}}
                    for i, t in enumerate(tasks)]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
