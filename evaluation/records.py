"""Where evaluation results live.

Each run is one EvaluationRecord `evals/<UTC time>-<id>.json` (written atomically:
a reader sees a whole result or none) holding the summary and every task's
completions, so a report can be re-rendered later. The adapter that was
evaluated gets the summary the guardrail needs (an EvaluationSummary in its
meta, through AdapterStore.record_evaluation), and the tenant's adapter state
records which system serving should use.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from codetailor.adapters import AdapterStore
from codetailor.artifacts import EvaluationRecord, EvaluationSummary
from codetailor.home import TenantPaths
from codetailor.systems import System


def new_eval_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def save(paths: TenantPaths, result: dict) -> Path:
    path = paths.evals_dir / f"{result['eval_id']}.json"
    EvaluationRecord.model_validate(result).write(path)
    return path


def eval_files(paths: TenantPaths) -> list[Path]:
    d = paths.evals_dir
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def latest(paths: TenantPaths) -> EvaluationRecord | None:
    files = eval_files(paths)
    return EvaluationRecord.read(files[-1]) if files else None


def record_in_adapter(store: AdapterStore, version: str, result: dict) -> EvaluationSummary | None:
    """Record the adapter systems' best CQI as the version's evaluation summary; None if none ran."""
    cqi = {s: v for s, v in result["cqi"].items() if System(s).uses_adapter}
    if not cqi:
        return None
    best = max(cqi, key=lambda s: cqi[s]["value"])
    summary = EvaluationSummary(eval_id=result["eval_id"], at=result["finished_at"], n=result["n"],
                                cqi=cqi[best]["value"], cqi_low=cqi[best]["low"], cqi_high=cqi[best]["high"],
                                system=System(best), cqi_by_system=cqi)
    store.record_evaluation(version, summary)
    return summary


def choose_system(cqi: dict[str, dict]) -> System:
    """The customised system with the highest CQI if it beats base (CQI > 5), else base."""
    custom = {s: v["value"] for s, v in cqi.items() if System(s).customised}
    if not custom:
        return System.BASE
    best = max(custom, key=lambda s: (custom[s], s))
    return System(best) if custom[best] > 5 else System.BASE
