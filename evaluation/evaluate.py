"""One evaluation run: tasks -> completions per system -> metrics -> CQI -> records.

Order matters on CPU: the vLLM engine is started before anything imports the
retrieval package (bm25s/numba loaded first break the engine's start), so cheap
input checks run first, then the engine, then file selection, retrieval and
generation.

Every run keeps its finished tasks in a partial file as it goes (evaluation/records.py);
`resume=True` continues the newest one made with the same plan (evaluation/resume.py), so a
large grid can be built over several runs and the record is the one a single run would write.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from codetailor.adapters import AdapterStore
from codetailor.config import Settings
from codetailor.errors import CodetailorError
from codetailor.hardware import hardware_record
from codetailor.home import TenantPaths
from codetailor.model import prompt_template, resolve_base_model
from codetailor.prompt_format import query_lines, snippets_from
from engine.protocol import AdapterRef, EngineClient
from codetailor.artifacts import PartialEvaluationHeader
from evaluation import data as eval_data
from evaluation import records, resume as resuming, scoring
from evaluation.guardrail import check_base_model
from codetailor.systems import NAMES, System
from evaluation.runner import run_systems, uses_adapter, uses_retrieval
from evaluation.tasks import Task, internal_apis, make_tasks


class EvaluationError(CodetailorError):
    pass


def parse_systems(text: str | Sequence[str]) -> tuple[str, ...]:
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [s for s in items if s not in NAMES]
    if bad or not items:
        raise EvaluationError(f"unknown system(s) {', '.join(bad) or '(none)'}; choose from {', '.join(NAMES)}")
    # base always runs: the CQI is relative to it.
    return tuple(dict.fromkeys([System.BASE.value, *items]))


class Plan:
    """Everything checked before the engine starts."""

    def __init__(self, settings: Settings, paths: TenantPaths, systems: Sequence[str], n: int | None,
                 adapter: str | None, resume: bool = False):
        self.settings, self.paths = settings, paths
        self.systems = parse_systems(systems)
        self.n = settings.evaluation.n if n is None else n
        if self.n <= 0:
            raise EvaluationError(f"--n must be a positive number of tasks, got {self.n}")
        store = AdapterStore(paths)
        self.version = adapter or store.latest()
        if adapter is None and any(uses_adapter(s) for s in self.systems) and self.version is None:
            raise EvaluationError(f"tenant {paths.tenant!r} has no adapter: run `codetailor train` "
                                  "or evaluate --systems base,rag")
        self.meta = store.meta(self.version) if self.version else None  # NotFound for a bad --adapter
        if self.meta is not None and any(uses_adapter(s) for s in self.systems):
            check_base_model(settings, paths, self.version, self.meta)
        from retrieval.files import has_index  # cheap: bm25s loads on first search

        if any(uses_retrieval(s) for s in self.systems) and not has_index(paths):
            raise EvaluationError(f"tenant {paths.tenant!r} has no index: run `codetailor index` first")
        # NotFound with the fix when the model is not fetched; ConfigError when no template fits it.
        self.template = prompt_template(settings, resolve_base_model(settings))
        self.identity = resuming.identity(self)
        # With resume: the unfinished run made with these settings, if any (its tasks are compared in run()).
        self.resume_from, note = resuming.choose(paths, self.identity) if resume else (None, "")
        if note:
            _say(note)


def _say(message: str) -> None:
    print(f"codetailor: {message}", file=sys.stderr, flush=True)


def _retrieve(settings: Settings, paths: TenantPaths, tasks: Sequence[Task], progress: bool) -> tuple[dict, dict]:
    """Per task: its snippets (never from its own file), and with prompt.symbols the definitions its
    cursor uses (its own file only as far as the task's prefix and suffix show it)."""
    import retrieval  # after the engine is up (module docstring)
    from retrieval.symbol_context import prompt_definitions

    cfg = settings.retrieval
    out, defs = {}, {}
    it = tasks
    if progress:
        from tqdm import tqdm
        it = tqdm(tasks, desc="retrieving", unit="task", leave=False)
    for t in it:
        hits = retrieval.search(settings, paths, query_lines(t.prefix, cfg.query_lines),
                                mode=settings.evaluation.retrieval_mode, top_k=cfg.top_k, exclude_paths=[t.path])
        out[t.id] = snippets_from(hits)
        if settings.prompt.symbols:
            c = t.cursor()
            defs[t.id] = prompt_definitions(paths, t.path, c.prefix, c.suffix, limit=settings.prompt.symbol_limit)
    return out, defs


async def run(plan: Plan, engine: EngineClient, *, progress: bool = True, report_dir: Path | None = None) -> dict:
    settings, paths = plan.settings, plan.paths
    cfg = settings.evaluation
    t0 = time.perf_counter()
    data = eval_data.load(settings, paths, plan.meta, plan.version)
    apis = internal_apis(data.files)
    tasks = make_tasks(data.files, data.heldout, apis, n=plan.n, kinds=tuple(cfg.task_kinds), seed=cfg.seed,
                       min_target_chars=cfg.min_target_chars)
    if not tasks:
        raise EvaluationError(f"the {len(data.heldout)} held-out files of {paths.tenant!r} hold no code lines "
                              "to complete")
    path = plan.resume_from
    if path is not None and not resuming.same_tasks(records.header_of(path), tasks):
        _say(f"not resuming evaluation {path.stem} of tenant {paths.tenant!r}: its held-out tasks differ from "
             "the ones cut now (the held-out files or their text changed since); starting a new run")
        path = None
    path = path or records.start_partial(paths, PartialEvaluationHeader(
        run_id=records.new_run_id(), tenant=str(paths.tenant), started_at=time.time(), plan=plan.identity,
        task_ids=[t.id for t in tasks], tasks_sha256=resuming.tasks_sha256(tasks)))
    with records.open_partial(path, resuming.busy(path.stem)) as partial:
        if path == plan.resume_from:
            _say(f"resuming evaluation {partial.header.run_id}: {len(partial.done)} of {len(tasks)} tasks done")
        todo = [t for t in tasks if t.id not in partial.done]
        adapter = await _generate(plan, engine, todo, partial, t0, progress)
    completions = {s: [partial.done[t.id][s] for t in tasks] for s in plan.systems}
    scores = scoring.score_all(tasks, completions, apis)
    cqi = scoring.cqis(scores, scale=cfg.cqi_scale, samples=cfg.bootstrap_samples, seed=cfg.seed)
    result = {
        "eval_id": records.new_eval_id(),
        "tenant": str(paths.tenant),
        "adapter": plan.version if adapter else None,
        "systems": {s: scoring.summarise(ss) for s, ss in scores.items()},
        "cqi": cqi,
        "n": len(tasks),
        "seconds": round(partial.seconds + time.perf_counter() - t0, 1),
        "finished_at": time.time(),
        "by_kind": scoring.per_kind(tasks, scores),
        "split": data.split,
        "internal_apis": len(apis),
        "chosen_system": records.choose_system(cqi),
        "hardware": _hardware(engine),
        "tasks": _task_rows(tasks, completions, scores),
        "runs": partial.run,
    }
    records.save(paths, result)
    records.remove_partial(partial)  # after the record: a kill in between leaves a run to resume
    for stale in resuming.superseded(paths, plan.identity, partial.path):
        records.remove_idle_partial(stale)
    store = AdapterStore(paths)
    if adapter:
        records.record_in_adapter(store, plan.version, result)
    store.set_system(result["chosen_system"])
    if report_dir is not None:
        from evaluation.report import render

        result["report"] = str(render(result, report_dir))
    return result


async def _generate(plan: Plan, engine: EngineClient, tasks: Sequence[Task], partial: records.PartialRun,
                    t0: float, progress: bool) -> AdapterRef | None:
    """Complete `tasks` for every system, keeping each task in `partial` as it finishes; returns
    the adapter the adapter systems ran with (None without one)."""
    settings, paths = plan.settings, plan.paths
    adapter = None
    if any(uses_adapter(s) for s in plan.systems):
        from engine.resolver import AdapterResolver

        adapter = AdapterResolver(settings.home).ref_for(paths.tenant, plan.version)
    if not tasks:
        return adapter
    snippets, definitions = _retrieve(settings, paths, tasks, progress) \
        if any(uses_retrieval(s) for s in plan.systems) else (None, None)

    def keep(task_id: str, completions: dict) -> None:
        partial.append(task_id, completions, partial.seconds + time.perf_counter() - t0)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks) * len(plan.systems), desc="generating", unit="completion")
    try:
        await run_systems(engine, tasks, plan.systems, settings, snippets=snippets, definitions=definitions,
                          adapter=adapter, on_done=bar.update if bar else None, on_task=keep,
                          template=plan.template)
    finally:
        if bar:
            bar.close()
    return adapter


def _hardware(engine: EngineClient) -> dict:
    """The machine and what the engine was started with (its resolved dtype and KV cache)."""
    plan = getattr(engine, "plan", None)
    return hardware_record(engine=plan.as_dict() if plan is not None else None)


def _task_rows(tasks, completions, scores) -> list[dict]:
    rows = []
    for i, t in enumerate(tasks):
        rows.append({
            "id": t.id, "kind": t.kind, "path": t.path, "line": t.line, "column": t.column, "target": t.target,
            "predictions": {s: completions[s][i].prediction for s in completions},
            "snippets": {s: list(completions[s][i].snippets) for s in completions if completions[s][i].snippets},
            **_definition_rows(completions, i),
            "usefulness": {s: round(float(scoring.usefulness_of([scores[s][i]])[0]), 4) for s in scores},
            # what paired comparisons of two runs need per task: exact match, and the internal-API
            # calls of the reference the prediction reproduced
            "exact_match": {s: scores[s][i].exact_match for s in scores},
            "api_calls": {s: [scores[s][i].api_matched, scores[s][i].api_reference] for s in scores},
        })
    return rows


def _definition_rows(completions, i: int) -> dict:
    """A task's symbol context per system: the definitions its prompt kept and how many the budget
    dropped (absent for systems and runs without one)."""
    kept = {s: list(c[i].definitions) for s, c in completions.items() if c[i].definitions}
    dropped = {s: c[i].dropped_definitions for s, c in completions.items() if c[i].dropped_definitions}
    return {**({"definitions": kept} if kept else {}), **({"dropped_definitions": dropped} if dropped else {})}


def public_summary(result: dict) -> dict:
    """The `--json` shape of the issue, plus the run's provenance."""
    keep = ("systems", "cqi", "n", "seconds", "tenant", "adapter", "eval_id", "chosen_system", "split", "by_kind",
            "report", "runs")
    return {k: result[k] for k in keep if k in result}


def evaluate(settings: Settings, paths: TenantPaths, *, systems: Sequence[str] | str = NAMES,
             n: int | None = None, adapter: str | None = None, report_dir: Path | None = None,
             engine: EngineClient | None = None, progress: bool = True, resume: bool = False) -> dict:
    """Synchronous entry (the CLI): checks inputs, starts an engine unless given one, runs. With
    `resume`, continues the tenant's newest unfinished run made with the same plan."""
    plan = Plan(settings, paths, systems, n, adapter, resume)
    if engine is not None:
        return asyncio.run(run(plan, engine, progress=progress, report_dir=report_dir))
    return run_plans(settings, {"run": plan}, progress=progress, report_dir=report_dir)["run"]


def run_plans(settings: Settings, plans: dict[str, Plan], *, progress: bool = False, report_dir: Path | None = None,
              on_start: Callable[[str, Plan], None] | None = None) -> dict[str, dict]:
    """Several runs, in order, through one engine started here and shut down after: the side-by-side
    comparisons (same tasks, one setting or adapter changed) pay for one engine start."""
    from engine.vllm_engine import VllmEngine

    engine = VllmEngine.start(settings, resolve_base_model(settings))

    async def main():
        try:
            out = {}
            for name, plan in plans.items():
                if on_start:
                    on_start(name, plan)
                out[name] = await run(plan, engine, progress=progress, report_dir=report_dir)
            return out
        finally:
            await engine.shutdown()

    return asyncio.run(main())
