"""`codetailor generate`: one completion through the engine, no server.

For people and for debugging: it lays out the prompt exactly as serving does
(codetailor.prompt_format.build with the engine's own token count), then runs
the base model (`--system base`) or the tenant's active adapter (`--system ft`).
Retrieval is not used here (that is `rag`, served by the serving stack).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

from codetailor.cli import add_json_flag, read_cursor
from codetailor.config import get_settings
from codetailor.errors import CodetailorError, NotFound
from codetailor.prompt_format import PromptParts, build, cut_at_suffix
from codetailor.tenants import registry_from_settings


def register(sub) -> None:
    g = sub.add_parser("generate", help="run one completion through the engine (no server)")
    g.add_argument("--tenant", required=True)
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prefix", help="the code before the cursor")
    src.add_argument("--file", type=Path, help="a source file; the cursor is at --line (and --column)")
    g.add_argument("--line", type=int, help="1-based cursor line for --file")
    g.add_argument("--column", type=int, help="0-based cursor column (default: start of the line)")
    g.add_argument("--path", help="path shown to the model (default: the file's name, or main.py)")
    g.add_argument("--system", choices=["base", "ft"], default="ft",
                   help="base model, or the tenant's active adapter (default)")
    g.add_argument("--max-tokens", type=int, default=64)
    add_json_flag(g)
    g.set_defaults(handler=_generate)


def _parts(args) -> tuple[PromptParts, bool]:
    """(prompt parts, whether the cursor is at a line start)."""
    if args.prefix is not None:
        if args.line is not None or args.column is not None:
            raise CodetailorError("--line/--column go with --file, not --prefix")
        return PromptParts(path=args.path or "main.py", prefix=args.prefix), False
    prefix, suffix = read_cursor(args.file, args.line, args.column)
    return PromptParts(path=args.path or args.file.name, prefix=prefix, suffix=suffix), args.column is None


def _generate(args):
    if args.max_tokens < 1:
        raise CodetailorError("--max-tokens must be at least 1")
    settings = get_settings()
    tenant = registry_from_settings(settings).tenant(args.tenant).tenant  # NotFound for an unknown tenant
    parts, at_line_start = _parts(args)

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
    partial = ""
    if settings.prompt.token_healing and not at_line_start:  # as serving does (prompt_format.heal)
        prefix, partial = template.heal(parts.prefix)
        parts = replace(parts, prefix=prefix)
    budget = min(settings.prompt.budget_tokens, settings.engine.max_model_len - args.max_tokens - 8)
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
        built = build(parts, engine.count_tokens, budget, max_suffix_lines=settings.prompt.max_suffix_lines,
                      min_prefix_share=settings.prompt.min_prefix_share, template=template)
        result = asyncio.run(engine.generate(GenerationRequest(built.text, args.max_tokens, adapter=adapter, heal=partial,
                                                               stop_token_ids=template.stop_token_ids)))
    except EngineError as e:
        raise CodetailorError(f"generation failed: {e}") from None
    finally:
        engine.close()
    text = result.text[1:] if at_line_start and result.text.startswith("\n") else result.text
    text = cut_at_suffix(text, built.parts.suffix)
    out = {
        "tenant": str(tenant), "system": args.system, "adapter": adapter.version if adapter else None,
        "completion": text, "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "dropped_snippets": built.dropped_snippets, "trimmed_prefix_lines": built.trimmed_prefix_lines,
        "engine_start_s": round(started, 1), "generation_ms": round(result.generation_ms, 1),
    }
    return out if args.json else text
