"""What token healing costs per request: the same mid-word cursors with and without it.

    .venv/bin/python bench/healing_bench.py [--prompts 24] [--max-tokens 16] [--concurrency 1]

Cursors are taken inside words of this repository's own Python files (the prompt is the file above the
cursor, laid out by the shared prompt format, up to 1024 tokens), each sent twice through one in-process
engine: plain (the prompt ends inside the word) and healed (`prompt_format.heal`, the engine spells the
word first, engine/token_healing.py). Rows alternate so load drift hits both alike. Prints p50/p95
latency and the extra engine steps per healed request, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASE = ROOT / ".home" / "test" / "models" / "smollm2-135m-instruct"


def cursors(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(path, prefix ending inside a word) from files under engine/, serving/, retrieval/."""
    rng = random.Random(seed)
    files = sorted(p for d in ("engine", "serving", "retrieval") for p in (ROOT / d).glob("*.py"))
    out = []
    while len(out) < n:
        path = rng.choice(files)
        text = path.read_text()
        spots = [m.start() + rng.randint(1, len(m.group(0)) - 1) for m in re.finditer(r"[A-Za-z_]{4,}", text)]
        cut = rng.choice(spots)
        if cut > 200:
            out.append((path.name, text[:cut]))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def run(engine, prompts, max_tokens: int, concurrency: int) -> dict:
    from engine.protocol import GenerationRequest

    sem = asyncio.Semaphore(concurrency)
    rows = {"plain": [], "healed": []}

    async def one(kind, text, heal, i):
        async with sem:
            t0 = time.perf_counter()
            r = await engine.generate(GenerationRequest(text, max_tokens, heal=heal, request_id=f"{kind}-{i}"))
            rows[kind].append(((time.perf_counter() - t0) * 1000, r.completion_tokens))

    for i, (plain, healed, heal) in enumerate(prompts):
        await asyncio.gather(one("plain", plain, "", i), one("healed", healed, heal, i))
    return {k: {"p50_ms": pct([ms for ms, _ in v], 50), "p95_ms": pct([ms for ms, _ in v], 95),
                "mean_completion_tokens": statistics.mean(t for _, t in v), "n": len(v)} for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=1)
    a = ap.parse_args()

    from codetailor import prompt_format as pf
    from codetailor.config import EngineConfig
    from engine.vllm_engine import VllmEngine

    engine = VllmEngine.start(EngineConfig(kv_cache_gib=1, max_model_len=2048, enable_lora=False),
                              BASE, home=ROOT / ".home" / "bench-healing")
    try:
        prompts = []
        for path, prefix in cursors(a.prompts):
            kept, partial = pf.heal(prefix)
            # Distinct repository names: the pair shares no prompt prefix, so neither is served from
            # the other's prefix cache (a healed request still reuses its own first step's blocks).
            def build(p, repo):
                return pf.build(pf.PromptParts(path=path, prefix=p, repo=repo), engine.count_tokens, 1024).text
            prompts.append((build(prefix, f"plain{len(prompts)}"), build(kept, f"healed{len(prompts)}"), partial))
        asyncio.run(run(engine, prompts[:2], a.max_tokens, a.concurrency))  # warm-up (and the vocabulary index)
        res = asyncio.run(run(engine, prompts, a.max_tokens, a.concurrency))
    finally:
        engine.close()
    res["healed_minus_plain_p50_ms"] = res["healed"]["p50_ms"] - res["plain"]["p50_ms"]
    res.update(machine=f"{platform.node()}, {os.cpu_count()} cores", date=time.strftime("%Y-%m-%d %H:%M"),
               command=" ".join(["python"] + sys.argv), load_avg=os.getloadavg())
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
