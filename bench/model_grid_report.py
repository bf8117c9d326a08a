"""The model grid, pooled: per base model and system, exact match, edit similarity, internal-API usage
and CQI (with its paired-bootstrap 95 % interval) over the held-out tasks of every repository that
bench/model_grid.sh evaluated, and each customised system against the other model on the same tasks.

Tasks are pooled, not averaged per repository: each task counts once, and the bootstrap resamples tasks
within each repository (a stratified resample, so every replicate keeps each repository's share).

    .venv/bin/python bench/model_grid_report.py /tmp/grid/out --out /tmp/grid/report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import publish  # noqa: E402
from bench.machine import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_runs(out: Path, home_root: Path) -> dict[tuple[str, str, str], list[dict]]:
    """(model, template, repo) -> task rows of the evaluation records the grid's eval steps made."""
    from codetailor.artifacts import EvaluationRecord
    from codetailor.home import Home

    runs: dict[tuple[str, str, str], list[dict]] = {}
    for f in sorted(out.glob("*-eval*.json")):
        model, repo, _ = f.stem.split("-", 2)   # <model>-<repo>-eval[-native]
        template = "native" if f.stem.endswith("-native") else "text"
        summary = json.loads(f.read_text())
        paths = Home(home_root / f"grid-{model}").tenant(summary["tenant"])
        rec = EvaluationRecord.read(paths.evals_dir / f"{summary['eval_id']}.json")
        runs[(model, template, repo)] = rec.tasks
    return runs


def stratified(sizes: list[int], samples: int, seed: int) -> np.ndarray:
    """Bootstrap rows over the concatenation of groups of `sizes`, each group resampled within itself."""
    rng = np.random.default_rng(seed)
    parts, start = [], 0
    for n in sizes:
        parts.append(start + rng.integers(0, n, size=(samples, n)))
        start += n
    return np.concatenate(parts, axis=1)


def metrics(rows: list[dict], system: str, idx: np.ndarray, scale: float) -> dict:
    from evaluation.cqi import cqi_of_gain, interval

    em = np.array([r["exact_match"][system] for r in rows], float)
    u = np.array([r["usefulness"][system] for r in rows], float)
    es = 2 * u - em   # usefulness is (EM + edit similarity) / 2 (evaluation/cqi.py)
    calls = np.array([r["api_calls"][system] for r in rows], float)   # [in prediction, in reference]
    out = {"n": len(rows), "exact_match": em.mean(), "edit_similarity": es.mean()}
    lo, hi = interval(em[idx].mean(axis=1))
    out.update(exact_match_low=lo, exact_match_high=hi)
    if calls[:, 1].sum():
        out["api_usage"] = calls[:, 0].sum() / calls[:, 1].sum()
    if system != "base":
        d = u - np.array([r["usefulness"]["base"] for r in rows], float)
        lo, hi = interval(d[idx].mean(axis=1))
        out.update(cqi=cqi_of_gain(d.mean(), scale), cqi_low=cqi_of_gain(lo, scale),
                   cqi_high=cqi_of_gain(hi, scale))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, help="the grid's output folder (its eval steps' JSON)")
    ap.add_argument("--home-root", type=Path, default=ROOT / ".home")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--markdown", action="store_true", help="also print the docs' tables (stderr)")
    args = ap.parse_args()

    from codetailor.config import get_settings

    scale = get_settings().evaluation.cqi_scale
    runs = load_runs(args.out_dir, args.home_root)
    result: dict = {"repositories": sorted({k[2] for k in runs}), "cells": {}}
    for (model, template) in sorted({k[:2] for k in runs}):
        repos = sorted(r for m, t, r in runs if (m, t) == (model, template))
        rows = [row for r in repos for row in runs[(model, template, r)]]
        idx = stratified([len(runs[(model, template, r)]) for r in repos], args.samples, args.seed)
        systems = list(rows[0]["exact_match"])
        result["cells"][f"{model}/{template}"] = {
            "repositories": {r: len(runs[(model, template, r)]) for r in repos},
            "systems": {s: metrics(rows, s, idx, scale) for s in systems}}
    # The same task under both models (text template), and under Qwen's two templates: paired
    # differences of exact match.
    result["versus"] = paired(runs, ("smollm2", "text"), ("qwen", "text"), result["repositories"], args)
    result["templates"] = paired(runs, ("qwen", "text"), ("qwen", "native"), result["repositories"], args)
    result["machine"] = record()
    publish(result, args.out)
    if args.markdown:
        print(markdown(result), file=sys.stderr)


def paired(runs: dict, a: tuple[str, str], b: tuple[str, str], repositories: list[str], args) -> dict:
    """Per system both cells ran: mean of b − a exact match over the tasks both answered, with a
    bootstrap interval stratified by repository."""
    from evaluation.cqi import interval

    common = [r for r in repositories if (*a, r) in runs and (*b, r) in runs]
    pairs = []
    for repo in common:
        first = {row["id"]: row for row in runs[(*a, repo)]}
        pairs += [(repo, first[row["id"]], row) for row in runs[(*b, repo)] if row["id"] in first]
    if not pairs:
        return {}
    idx = stratified([sum(1 for p in pairs if p[0] == repo) for repo in common], args.samples, args.seed)
    out = {}
    for system in pairs[0][1]["exact_match"]:
        if system not in pairs[0][2]["exact_match"]:
            continue
        d = np.array([y["exact_match"][system] - x["exact_match"][system] for _, x, y in pairs], float)
        lo, hi = interval(d[idx].mean(axis=1))
        out[system] = {"n": len(d), "exact_match_difference": round(d.mean(), 4),
                       "low": round(lo, 4), "high": round(hi, 4)}
    return out


def markdown(result: dict) -> str:
    """The grid as docs/models.md shows it: one row per model, template and system."""
    lines = ["| model / template | system | n | exact match (95 % CI) | edit similarity | internal-API usage | CQI (95 % CI) |",
             "|---|---|---|---|---|---|---|"]
    for cell, one in result["cells"].items():
        for system in ("base", "rag", "ft", "ft+rag"):
            m = one["systems"].get(system)
            if m is None:
                continue
            cqi = "5 (reference)" if system == "base" else f"{m['cqi']:.2f} ({m['cqi_low']:.2f}–{m['cqi_high']:.2f})"
            api = f"{m['api_usage']:.3f}" if "api_usage" in m else "—"
            lines.append(f"| {cell} | {system} | {m['n']} | {m['exact_match']:.3f} ({m['exact_match_low']:.3f}–"
                         f"{m['exact_match_high']:.3f}) | {m['edit_similarity']:.3f} | {api} | {cqi} |")
    for key, title in (("versus", "EM qwen − smollm2"), ("templates", "EM qwen native − text")):
        if result.get(key):
            lines += ["", f"| system | n | {title} (95 % CI) |", "|---|---|---|"]
            for system, v in result[key].items():
                lines.append(f"| {system} | {v['n']} | {v['exact_match_difference']:+.3f} "
                             f"({v['low']:+.3f} – {v['high']:+.3f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
