"""Engine benchmark: tokens/s and per-request latency with 0, 1, 8, 64 distinct adapters.

One VllmEngine (max_loras / max_cpu_loras small enough that 64 adapters swap in
and out) runs the same N requests at a fixed concurrency for each scenario:
request i uses adapter i % k (k = 0: base model only). The naive baseline is
HF transformers + PEFT serving one request at a time, switching the adapter
before each request. The CPU LoRA path is chosen with CODETAILOR_CPU_LORA
(segment = this project's plugin, fix = masked stock ops, off = stock vLLM).

    CODETAILOR_CPU_LORA=segment .venv/bin/python bench/engine_bench.py --out /tmp/bench.json

--dtype (default auto: codetailor/hardware.py's choice), --threads (the engine's OpenMP
threads, 0 = inherit) and --wait-policy (OMP_WAIT_POLICY, set before torch loads) pick
the engine's settings; --busy 0,1 repeats each scenario with another process spinning on
one core. The JSON holds the hardware record and the dtype the engine ran.

Adapters are random rank-16 all-linear LoRAs of the base model (PEFT layout),
written once under --workdir. Results go to stdout as JSON (and --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import publish  # noqa: E402
from bench.machine import apply_wait_policy, busy_core, load, record, uptime  # noqa: E402

PROMPTS = [
    "def parse_config(path):\n    ",
    "class LRUCache:\n    def __init__(self, capacity):\n        ",
    "import json\n\ndef load_records(path):\n    ",
    "def binary_search(items, target):\n    ",
    "def merge_sort(xs):\n    ",
    "async def fetch_all(urls):\n    ",
    "def to_snake_case(name):\n    ",
    "class Matrix:\n    def __mul__(self, other):\n        ",
]


def make_adapters(base: Path, workdir: Path, n: int, rank: int) -> list[str]:
    """n tenants with one active adapter each; the first is built by PEFT, the rest
    reuse its layout with fresh random weights (much faster than n PEFT saves)."""
    import torch
    from safetensors.torch import load_file, save_file

    from codetailor.adapters import AdapterStore
    from codetailor.home import Home

    home = Home(workdir / "home")
    tenants = [f"bench-{i:03d}" for i in range(n)]
    first = AdapterStore(home.tenant(tenants[0]))
    if first.active() is None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                                      init_lora_weights=False))
        with first.new_version() as staged:
            peft_model.save_pretrained(staged.dir)
        v = staged.version
        first.set_active(v)
    template_dir = first.path(first.active())
    template = load_file(str(template_dir / "adapter_model.safetensors"))
    config = (template_dir / "adapter_config.json").read_text()
    for i, t in enumerate(tenants[1:], start=1):
        store = AdapterStore(home.tenant(t))
        if store.active() is not None:
            continue
        g = torch.Generator().manual_seed(i)
        weights = {k: (torch.randn(v.shape, generator=g) * 0.02).contiguous() for k, v in template.items()}
        with store.new_version() as staged:
            save_file(weights, str(staged.dir / "adapter_model.safetensors"))
            (staged.dir / "adapter_config.json").write_text(config)
        v = staged.version
        store.set_active(v)
    return tenants


async def run_scenario(engine, refs, n_requests: int, concurrency: int, max_tokens: int) -> dict:
    from engine.protocol import GenerationRequest

    sem = asyncio.Semaphore(concurrency)
    latencies, tokens = [], []

    async def one(i: int):
        adapter = refs[i % len(refs)] if refs else None
        async with sem:
            t = time.perf_counter()
            r = await engine.generate(GenerationRequest(PROMPTS[i % len(PROMPTS)], max_tokens, adapter=adapter))
            latencies.append(time.perf_counter() - t)
            tokens.append(r.completion_tokens)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_requests)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=20)
    return {"adapters": len(refs), "requests": n_requests, "tokens": sum(tokens), "wall_s": round(wall, 2),
            "tok_per_s": round(sum(tokens) / wall, 1), "p50_s": round(statistics.median(latencies), 2),
            "p95_s": round(q[18], 2), "mean_completion_tokens": round(sum(tokens) / len(tokens), 1)}


def naive_baseline(base: Path, adapter_dirs: list[Path], n_requests: int, max_tokens: int, dtype: str) -> dict:
    """HF + PEFT, one request at a time, loading the request's adapter before it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codetailor.hardware import torch_dtype

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype(dtype))
    peft_model = None
    latencies, tokens = [], []
    t0 = time.perf_counter()
    for i in range(n_requests):
        t = time.perf_counter()
        path = adapter_dirs[i % len(adapter_dirs)]
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, str(path), adapter_name="a")
        else:  # switch: drop the previous adapter, load this request's
            peft_model.delete_adapter("a")
            peft_model.load_adapter(str(path), adapter_name="a")
            peft_model.set_adapter("a")
        ids = tok(PROMPTS[i % len(PROMPTS)], return_tensors="pt").input_ids
        with torch.no_grad():
            out = peft_model.generate(ids, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=tok.eos_token_id)
        tokens.append(out.shape[1] - ids.shape[1])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    return {"adapters": len(adapter_dirs), "requests": n_requests, "tokens": sum(tokens), "wall_s": round(wall, 2),
            "tok_per_s": round(sum(tokens) / wall, 1), "p50_s": round(statistics.median(latencies), 2),
            "p95_s": round(max(latencies), 2), "note": "sequential; p95 is the max"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path(".home/test/models/smollm2-135m-instruct"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/codetailor-engine-bench"))
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--threads", type=int, default=0, help="engine OpenMP threads (0: inherit)")
    ap.add_argument("--wait-policy", choices=["passive", "active"])
    ap.add_argument("--busy", default="0", help="comma-separated: 0 (as idle as it gets), 1 (one core taken)")
    ap.add_argument("--scenarios", default="0,1,8,64", help="numbers of distinct adapters")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-loras", type=int, default=8)
    ap.add_argument("--max-cpu-loras", type=int, default=16)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--naive-requests", type=int, default=8, help="0 skips the HF+PEFT baseline")
    ap.add_argument("--ops-only", action="store_true", help="only the LoRA op micro-benchmark")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    apply_wait_policy(args.wait_policy)
    if args.ops_only:
        os.environ["CODETAILOR_CPU_LORA"] = "off"  # keep the stock op until ops_microbench registers
        from bench.lora_ops_bench import op_microbench

        print(json.dumps({"uptime": uptime(), **op_microbench(dtype=args.dtype)}, indent=2))
        return

    scenarios = [int(s) for s in args.scenarios.split(",")]
    tenants = make_adapters(args.model, args.workdir, max(scenarios + [1]), args.rank)
    result = {**record(wait_policy=args.wait_policy or "default"), "uptime_before": uptime(),
              "cpu_lora_mode": os.environ.get("CODETAILOR_CPU_LORA", "segment"), "args": {
                  k: str(v) for k, v in vars(args).items()}, "scenarios": []}

    from codetailor.config import EngineConfig
    from codetailor.home import Home
    from engine.vllm_engine import VllmEngine

    cfg = EngineConfig(dtype=args.dtype, max_model_len=1024, max_loras=args.max_loras, max_lora_rank=args.rank,
                       max_cpu_loras=args.max_cpu_loras, kv_cache_gib=1, max_num_seqs=args.concurrency,
                       threads=args.threads)
    t = time.perf_counter()
    engine = VllmEngine.start(cfg, args.model, home=Home(args.workdir / "home"))
    result["engine_start_s"] = round(time.perf_counter() - t, 1)
    result["engine_plan"] = engine.plan.as_dict()
    result["engine_processes"] = engine.process_report()   # the OpenMP runtime the engine core loaded
    dtype = engine.plan.dtype.value
    try:
        async def all_scenarios():
            refs_all = [engine.resolver.ref_for(t) for t in tenants]
            await run_scenario(engine, refs_all[:1], 4, 4, 8)  # warm-up (first LoRA path, caches)
            for busy in [int(b) for b in args.busy.split(",")]:
                for k in scenarios:
                    before = load()
                    with busy_core(bool(busy)):
                        r = await run_scenario(engine, refs_all[:k], args.requests, args.concurrency,
                                               args.max_tokens)
                    r.update(dtype=dtype, threads=args.threads, busy_core=bool(busy),
                             wait_policy=args.wait_policy or "default", load_before=before, load_after=load())
                    print(json.dumps(r), flush=True)
                    result["scenarios"].append(r)
        asyncio.run(all_scenarios())
    finally:
        engine.close()
    if args.naive_requests:
        home = Home(args.workdir / "home")
        from codetailor.adapters import AdapterStore

        dirs = [AdapterStore(home.tenant(t)).path(AdapterStore(home.tenant(t)).active()) for t in tenants]
        result["naive_hf_peft"] = naive_baseline(args.model, dirs, args.naive_requests, args.max_tokens, dtype)
        print(json.dumps(result["naive_hf_peft"]), flush=True)
    by_k = {s["adapters"]: s["tok_per_s"] for s in result["scenarios"] if not s["busy_core"]}
    if 0 in by_k and max(by_k) > 0:
        kmax = max(by_k)
        result[f"ratio_{kmax}_adapters_vs_base"] = round(by_k[kmax] / by_k[0], 2)
        if "naive_hf_peft" in result:
            result[f"ratio_{kmax}_adapters_vs_naive"] = round(by_k[kmax] / result["naive_hf_peft"]["tok_per_s"], 2)
    result["uptime_after"] = uptime()
    publish(result, args.out)


if __name__ == "__main__":
    main()
