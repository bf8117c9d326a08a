"""Score completions: per-task metrics, per-system means, CQI against base.

Internal-API usage is counted over the tasks whose reference calls one of the
tenant's own functions or classes:
- api_usage: the share of those reference calls the completion reproduces
  (same API, same place) — how often the system calls the tenant's code where
  the held-out source does;
- api_call_ratio: all internal-API calls in the completions / all in the
  references at the same places (1.0 = as often as the source; above 1 means
  it calls them where the source does not).
Both are None when no task's reference calls an internal API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evaluation import metrics
from evaluation.cqi import compute_cqi, usefulness
from evaluation.runner import Completion
from evaluation.tasks import Task

METRICS = ("exact_match", "edit_similarity", "codebleu", "identifier_match", "api_usage")


@dataclass(frozen=True)
class TaskScore:
    exact_match: float
    edit_similarity: float
    codebleu: float | None
    identifier_match: float
    api_reference: int     # internal-API calls in the reference
    api_predicted: int     # internal-API calls in the prediction
    api_matched: int       # of the reference's, reproduced


def score_task(task: Task, prediction: str, apis: frozenset[str]) -> TaskScore:
    ref_calls = metrics.api_calls(task.target, apis)
    pred_calls = metrics.api_calls(prediction, apis)
    return TaskScore(
        exact_match=metrics.exact_match(prediction, task.target),
        edit_similarity=metrics.edit_similarity(prediction, task.target),
        codebleu=metrics.codebleu(prediction, task.target, task.language),
        identifier_match=metrics.identifier_match(prediction, task.target),
        api_reference=len(ref_calls),
        api_predicted=len(pred_calls),
        api_matched=len(ref_calls & pred_calls),
    )


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(scores: Sequence[TaskScore]) -> dict:
    ref = sum(s.api_reference for s in scores)
    return {
        "exact_match": _mean([s.exact_match for s in scores]),
        "edit_similarity": _mean([s.edit_similarity for s in scores]),
        "codebleu": _mean([s.codebleu for s in scores]),
        "identifier_match": _mean([s.identifier_match for s in scores]),
        "api_usage": (sum(s.api_matched for s in scores) / ref) if ref else None,
        "api_call_ratio": (sum(s.api_predicted for s in scores if s.api_reference) / ref) if ref else None,
        "n": len(scores),
    }


def score_all(tasks: Sequence[Task], completions: dict[str, list[Completion]], apis: frozenset[str]
              ) -> dict[str, list[TaskScore]]:
    out = {}
    for system, comps in completions.items():
        by_id = {c.task_id: c for c in comps}
        out[system] = [score_task(t, by_id[t.id].prediction, apis) for t in tasks]
    return out


def per_kind(tasks: Sequence[Task], scores: dict[str, list[TaskScore]]) -> dict[str, dict[str, dict]]:
    """{kind: {system: summary}} — the same numbers split by task kind."""
    kinds = sorted({t.kind for t in tasks})
    return {k: {system: summarise([s for t, s in zip(tasks, ss) if t.kind == k]) for system, ss in scores.items()}
            for k in kinds}


def usefulness_of(scores: Sequence[TaskScore]) -> np.ndarray:
    return usefulness(np.array([s.exact_match for s in scores]), np.array([s.edit_similarity for s in scores]))


def cqis(scores: dict[str, list[TaskScore]], *, scale: float, samples: int, seed: int) -> dict[str, dict]:
    """CQI with its interval for each evaluated system other than base (needs base)."""
    if "base" not in scores:
        return {}
    base_u = usefulness_of(scores["base"])
    return {system: compute_cqi(usefulness_of(ss), base_u, scale=scale, samples=samples, seed=seed).as_dict()
            for system, ss in scores.items() if system != "base"}
