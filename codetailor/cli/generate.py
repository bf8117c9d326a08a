"""`codetailor generate`: one completion through the engine, no server.

For people and for debugging: it lays out the prompt and cuts the completion
exactly as serving does (codetailor.completion, with the engine's own token count), then runs
the base model (`--system base`) or the tenant's active adapter (`--system ft`).
Retrieval is not used here (that is `rag`, served by the serving stack).
"""

from __future__ import annotations

import asyncio
import os
import time

from codetailor.cli import add_cursor_flags, add_json_flag, read_cursor
from codetailor.config import get_settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.tenants import registry_from_settings


def register(sub) -> None:
    g = sub.add_parser("generate", help="run one completion through the engine (no server)")
    g.add_argument("--tenant", required=True)
    add_cursor_flags(g, "main.py")
    g.add_argument("--system", choices=["base", "ft"], default="ft",
                   help="base model, or the tenant's active adapter (default)")
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

    adapter = None
    if args.system == "ft":
        adapter = AdapterResolver(Home(settings.home)).ref_for(tenant)
        if adapter is None:
            raise NotFound(f"tenant {tenant!r} has no active adapter; use --system base")
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
        prompt = completion.prompt(cursor, (), count=engine.count_tokens, budget=budget,
                                   prompt_cfg=settings.prompt, template=template)
        result = asyncio.run(engine.generate(GenerationRequest(prompt.text, args.max_tokens, adapter=adapter,
                                                               heal=prompt.heal, stop_token_ids=prompt.stop_token_ids)))
    except EngineError as e:
        raise CodetailorError(f"generation failed: {e}") from None
    finally:
        engine.close()
    text = prompt.finish(result.text).text
    out = {
        # "completion": the key `codetailor complete --json` names it with too.
        "tenant": str(tenant), "system": args.system, "adapter": adapter.version if adapter else None,
        "completion": text, "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "dropped_snippets": prompt.built.dropped_snippets, "trimmed_prefix_lines": prompt.built.trimmed_prefix_lines,
        "engine_start_s": round(started, 1), "generation_ms": round(result.generation_ms, 1),
    }
    return out if args.json else text
