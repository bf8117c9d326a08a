"""Generate every system's completions for the same tasks through the engine.

The four systems differ only in what the prompt holds and which weights run:

    base     generic model, the file alone
    rag      generic model, the tenant's retrieved snippets before the file (with prompt.symbols,
             also the definitions the cursor uses, resolved as serving resolves them)
    ft       the tenant's adapter, the file alone
    ft+rag   the tenant's adapter with the snippets

Prompts and the text inserted at the cursor come from codetailor.completion,
exactly as serving makes them (same budget, healing and line-start rule), decoding is greedy, and all requests of
all systems are submitted at once so the engine batches them.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from codetailor import completion
from codetailor.config import Settings
from codetailor.prompt_format import TEXT, Signature, Snippet, Template
from codetailor.systems import System
from engine.protocol import AdapterRef, EngineClient, GenerationRequest
from evaluation.tasks import Task, extract_prediction

@dataclass(frozen=True)
class Completion:
    task_id: str
    system: str
    prompt_tokens: int
    raw: str
    prediction: str
    snippets: tuple[str, ...]  # "path:start-end" of the snippets the prompt kept
    definitions: tuple[str, ...] = ()   # "path:name" of the definitions the prompt kept
    dropped_definitions: int = 0        # resolved but left out for the budget


def uses_adapter(system: str) -> bool:
    return System(system).uses_adapter


def uses_retrieval(system: str) -> bool:
    return System(system).uses_retrieval


def task_prompt(task: Task, snippets: Sequence[Snippet], settings: Settings, count, repo: str,
                template: Template = TEXT, definitions: Sequence[Signature] = ()) -> completion.Prompt:
    """The task's cursor laid out as serving lays out an editor's (codetailor.completion), with room
    for `evaluation.max_new_tokens`."""
    budget = completion.prompt_budget(settings.prompt.budget_tokens, settings.engine.max_model_len,
                                      settings.evaluation.max_new_tokens)
    return completion.prompt(task.cursor(), snippets, count=count, budget=budget, prompt_cfg=settings.prompt,
                             template=template, repo=repo, definitions=definitions)


def _stop(task: Task) -> tuple[str, ...]:
    # A next-line completion starts with the newline itself, so it cannot stop at "\n".
    return () if task.kind == "next_line" else ("\n",)


async def run_systems(
    engine: EngineClient,
    tasks: Sequence[Task],
    systems: Sequence[str],
    settings: Settings,
    *,
    snippets: dict[str, tuple[Snippet, ...]] | None = None,
    definitions: dict[str, tuple[Signature, ...]] | None = None,
    adapter: AdapterRef | None = None,
    repo: str = "repo",
    on_done: Callable[[], None] | None = None,
    on_task: Callable[[str, dict[str, Completion]], None] | None = None,
    template: Template = TEXT,
) -> dict[str, list[Completion]]:
    """Completions per system, in task order, in the base model's prompt `template`
    (codetailor.model.prompt_template). Retrieval systems show each task's `definitions` too
    (none without them). `on_task(task id, {system: completion})` is called as each task's last
    system finishes (evaluation/records.py keeps it, so a killed run loses only tasks in flight)."""
    if any(uses_retrieval(s) for s in systems) and snippets is None:
        raise ValueError("a retrieval system needs the tasks' snippets")
    if any(uses_adapter(s) for s in systems) and adapter is None:
        raise ValueError("an adapter system needs an adapter")
    max_tokens = settings.evaluation.max_new_tokens
    run_id = uuid.uuid4().hex[:8]  # request ids stay unique on an engine shared with others
    unfinished: dict[str, dict[str, Completion]] = {t.id: {} for t in tasks}

    async def one(system: str, task: Task) -> Completion:
        snips = snippets.get(task.id, ()) if uses_retrieval(system) else ()
        defs = (definitions or {}).get(task.id, ()) if uses_retrieval(system) else ()
        prompt = task_prompt(task, snips, settings, engine.count_tokens, repo, template, defs)
        result = await engine.generate(GenerationRequest(
            prompt=prompt.text, max_tokens=max_tokens, temperature=0.0, stop=_stop(task),
            stop_token_ids=prompt.stop_token_ids,
            adapter=adapter if uses_adapter(system) else None,
            request_id=f"eval-{run_id}-{system}-{task.id}", seed=settings.evaluation.seed,
            heal=prompt.heal))
        if on_done:
            on_done()
        kept = tuple(f"{s.path}:{s.start_line}-{s.end_line}" for s in prompt.snippets)
        done = Completion(task.id, system, result.prompt_tokens, result.text,
                          extract_prediction(task, prompt.finish(result.text).text), kept,
                          tuple(f"{d.path}:{d.name}" for d in prompt.definitions), prompt.dropped_definitions)
        systems_done = unfinished[task.id]
        systems_done[system] = done
        if on_task and len(systems_done) == len(systems):
            on_task(task.id, dict(systems_done))
        return done

    # Task by task, every system of a task together: the engine admits requests in order, so tasks
    # finish (and are kept, see on_task) one after another instead of all at the very end.
    jobs = [one(system, task) for task in tasks for system in systems]
    results = await asyncio.gather(*jobs)
    out: dict[str, list[Completion]] = {s: [] for s in systems}
    for c in results:
        out[c.system].append(c)
    return out
