"""`codetailor eval --resume`: which unfinished run to continue.

Decoding is greedy, so a completion is a function of its prompt and the weights; tasks are a
function of the seed, the held-out files and their text (evaluation/tasks.py draws them from a
seeded generator over sorted paths). A killed run's completions are therefore the ones a new run
would make, as long as everything that shapes a prompt or a request is unchanged: `identity`
lists that, a run's header records it, and a run is continued only when both agree. The tasks
themselves are compared once they are cut (after the engine starts: see evaluate.py), by id and
by text. A run that cannot be continued is left alone and a new one started, saying why: a kept
run is never mixed into another's record, and `--resume` never blocks a grid of runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from codetailor.artifacts import PartialEvaluationHeader
from codetailor.errors import Busy
from codetailor.hardware import choose_dtypes, detect
from codetailor.home import TenantPaths
from codetailor.model import model_checksum, resolve_base_model
from evaluation import records
from evaluation.runner import uses_adapter, uses_retrieval
from evaluation.tasks import Task

if TYPE_CHECKING:
    from evaluation.evaluate import Plan


class RunInProgress(Busy):
    pass


def identity(plan: Plan) -> dict[str, Any]:
    """Flat name -> value (as JSON reads it back) of everything that changes a prompt, a request
    or the weights that answer it."""
    s = plan.settings
    adapter = any(uses_adapter(x) for x in plan.systems)
    out: dict[str, Any] = {
        "systems": sorted(plan.systems),  # the order given on the command line changes nothing
        "n": plan.n,
        "adapter": plan.version if adapter else None,
        "adapter_uid": plan.meta.uid if adapter and plan.meta is not None else None,  # a recreated v0001
        "base_model": model_checksum(resolve_base_model(s)),
        "template": plan.template.name,
        "engine.dtype": choose_dtypes(detect(), engine=s.engine.dtype).engine.value,
        "engine.max_model_len": s.engine.max_model_len,
        **{f"evaluation.{k}": getattr(s.evaluation, k)
           for k in ("seed", "task_kinds", "min_target_chars", "max_new_tokens")},
        **{f"prompt.{k}": v for k, v in s.prompt.model_dump(mode="json").items()},
    }
    if any(uses_retrieval(x) for x in plan.systems):
        from retrieval.files import index_version  # cheap: no search library loads

        out["evaluation.retrieval_mode"] = s.evaluation.retrieval_mode
        out.update({f"retrieval.{k}": getattr(s.retrieval, k)
                    for k in ("top_k", "query_lines", "rrf_k", "candidates", "hnsw_ef", "exact_vectors", "encoder")})
        out["index"] = index_version(plan.paths)
    return json.loads(json.dumps(out))


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    unset = "(unset)"
    return [f"{k} was {json.dumps(recorded.get(k, unset))}, now {json.dumps(current.get(k, unset))}"
            for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]


def choose(paths: TenantPaths, current: dict[str, Any]) -> tuple[Path | None, str]:
    """The newest unfinished run of the tenant made with `current` (None when it has none), and
    what to tell the user. Runs made with other settings are left where they are: they are
    not this run, and another invocation with their settings may still continue them."""
    runs = records.partial_runs(paths)
    for path, header in runs:
        if header.plan == current:
            return path, ""
    if not runs:
        return None, f"no unfinished evaluation of tenant {paths.tenant!r} to resume: starting a new run"
    header = runs[0][1]
    others = f" (and {len(runs) - 1} older)" if len(runs) > 1 else ""
    return None, (f"not resuming evaluation {header.run_id}{others} of tenant {paths.tenant!r}: "
                  f"{'; '.join(differences(header.plan, current))}; starting a new run")


def superseded(paths: TenantPaths, current: dict[str, Any], finished: Path) -> list[Path]:
    """Unfinished runs made with `current` other than `finished`: a record of those settings now
    exists, so they would only ever be resumed into a second copy of it."""
    return [p for p, h in records.partial_runs(paths) if h.plan == current and p != finished]


def tasks_sha256(tasks: Sequence[Task]) -> str:
    return hashlib.sha256(json.dumps([t.as_dict() for t in tasks], sort_keys=True).encode()).hexdigest()


def same_tasks(header: PartialEvaluationHeader, tasks: Sequence[Task]) -> bool:
    """The tasks cut now are the run's: the same ids in the same order, over the same text."""
    return header.task_ids == [t.id for t in tasks] and header.tasks_sha256 == tasks_sha256(tasks)


def busy(run_id: str):
    return lambda: RunInProgress(f"evaluation {run_id} is being continued by another process")
