"""`codetailor generate`: one completion through the engine, no server.

For people and for debugging: it lays out the prompt and cuts the completion
exactly as serving does (codetailor.completion, with the engine's own token count), then runs
the base model (`--system base`) or the tenant's active adapter (`--system ft`).
With `--rag` the prompt also holds what serving's rag systems put there: the
tenant's retrieved snippets and, with prompt.symbols, the definitions the cursor
uses (retrieval/symbol_context.py).
"""

from __future__ import annotations

import asyncio
import os
import time

from codetailor.cli import add_cursor_flags, add_json_flag, read_cursor
from codetailor.config import get_settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.systems import System
from codetailor.tenants import registry_from_settings


def register(sub) -> None:
    g = sub.add_parser("generate", help="run one completion through the engine (no server)")
    g.add_argument("--tenant", required=True)
    add_cursor_flags(g, "main.py")
    g.add_argument("--system", choices=["base", "ft"], default="ft",
                   help="base model, or the tenant's active adapter (default)")
    g.add_argument("--rag", action="store_true",
                   help="add the tenant's retrieved snippets (and, with prompt.symbols, the definitions the "
                        "cursor uses) as serving's rag systems do; needs `codetailor index`")
    g.add_argument("--max-tokens", type=int, default=64)
    add_json_flag(g)
    g.set_defaults(handler=_generate)


def _generate(args):
    if args.max_tokens < 1:
        raise CodetailorError("--max-tokens must be at least 1")
    settings = get_settings()
    tenant = registry_from_settings(settings).tenant(args.tenant).tenant  # NotFound for an unknown tenant
    cursor = read_cursor(args, "main.py")

    from codetailor import completion
    from codetailor.home import Home
    from codetailor.model import prompt_template, resolve_base_model
    from engine.protocol import EngineError, GenerationRequest
    from engine.resolver import AdapterResolver

    home = Home(settings.home)
    adapter = None
    if args.system == "ft":
        adapter = AdapterResolver(home).ref_for(tenant)
        if adapter is None:
            raise NotFound(f"tenant {tenant!r} has no active adapter; use --system base")
    paths = home.tenant(tenant)
    if args.rag:
        from retrieval.files import has_index  # cheap: bm25s loads on the first search

        if not has_index(paths):
            raise NotFound(f"tenant {tenant!r} has no index yet: run `codetailor index --tenant {tenant} PATH`")
    model_path = resolve_base_model(settings)
    template = prompt_template(settings, model_path)
    budget = completion.prompt_budget(settings.prompt.budget_tokens, settings.engine.max_model_len, args.max_tokens)
    if budget < 16:
        raise CodetailorError(f"--max-tokens {args.max_tokens} leaves no room for a prompt "
                              f"in engine.max_model_len {settings.engine.max_model_len}")

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from engine.vllm_engine import VllmEngine

    t0 = time.perf_counter()
    try:
        engine = VllmEngine.start(settings, model_path)
    except EngineError as e:
        raise CodetailorError(str(e)) from None
    started = time.perf_counter() - t0
    try:
        # Retrieval after the engine's start, as evaluation does: bm25s/numba loaded first break it on CPU.
        snippets, definitions = _retrieved(settings, paths, cursor) if args.rag else ((), ())
        prompt = completion.prompt(cursor, snippets, count=engine.count_tokens, budget=budget,
                                   prompt_cfg=settings.prompt, template=template, definitions=definitions)
        result = asyncio.run(engine.generate(GenerationRequest(prompt.text, args.max_tokens, adapter=adapter,
                                                               heal=prompt.heal, stop_token_ids=prompt.stop_token_ids)))
    except EngineError as e:
        raise CodetailorError(f"generation failed: {e}") from None
    finally:
        engine.close()
    text = prompt.finish(result.text).text
    out = {
        # "completion": the key `codetailor complete --json` names it with too.
        "tenant": str(tenant), "system": System.of(adapter is not None, args.rag).value,
        "adapter": adapter.version if adapter else None,
        "completion": text, "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "dropped_snippets": prompt.built.dropped_snippets, "trimmed_prefix_lines": prompt.built.trimmed_prefix_lines,
        "snippets": [f"{x.path}:{x.start_line}-{x.end_line}" for x in prompt.snippets],
        "definitions": [f"{d.path}:{d.name}" for d in prompt.definitions],
        "dropped_definitions": prompt.dropped_definitions,
        "engine_start_s": round(started, 1), "generation_ms": round(result.generation_ms, 1),
    }
    return out if args.json else text


def _retrieved(settings, paths, cursor) -> tuple[tuple, tuple]:
    """(snippets, definitions) for the cursor, found as serving's ingress finds them."""
    import retrieval
    from codetailor.prompt_format import snippets_from
    from retrieval.symbol_context import prompt_definitions

    hits = retrieval.search(settings, paths, cursor.query(settings.retrieval.query_lines),
                            top_k=settings.retrieval.top_k) if settings.retrieval.top_k > 0 else []
    definitions = prompt_definitions(paths, cursor.path, cursor.prefix, cursor.suffix,
                                     limit=settings.prompt.symbol_limit) if settings.prompt.symbols else ()
    return snippets_from(hits), definitions
