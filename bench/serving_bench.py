"""Serving benchmark: p50/p95 end-to-end latency and tokens/s through gRPC
(front server -> Serve ingress -> model replica) with 0, 1, 8 and 64 tenants'
adapters, beside the same requests sent to the engine in process.

    .venv/bin/python bench/serving_bench.py [--adapters 0,1,8,64] [--requests 32] [--concurrency 4]

The difference of the p50s is what the gRPC + Serve stack adds. Also measured:
the front server alone (an INVALID_ARGUMENT round trip: auth + validation, no
Ray) and a gRPC health check. Results go to bench/out/serving.json and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["def fibonacci(n):\n    if n < 2:\n        return n\n    return",
           "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n",
           "import json\n\ndef load(path):\n    with open(path) as f:\n        return",
           "def is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2,"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def make_tenants(home: Path, base: Path, n: int) -> list[str]:
    """n tenants with distinct adapter versions (one random LoRA, copied; distinct uids)."""
    from codetailor.adapters import AdapterStore
    from codetailor.atomic import atomic_write_json
    from codetailor.home import Home
    from codetailor.model import model_checksum
    from codetailor.tenants import Registry
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.fixtures.serving import make_adapter

    reg = Registry(Home(home), "bench-pepper")
    names = []
    first = None
    for i in range(max(n, 1)):
        name = f"t{i:02d}"
        paths, _ = reg.create_tenant(name)
        names.append(name)
        if n == 0:
            break
        store = AdapterStore(paths)
        if first is None:
            v = make_adapter(paths, base, seed=1)
            first = store.path(v)
        else:
            with store.new_version() as (v, tmp):
                for f in ("adapter_config.json", "adapter_model.safetensors"):
                    shutil.copy(first / f, tmp / f)
                atomic_write_json(tmp / "meta.json", {"base_model_checksum": model_checksum(base)})
        store.set_active(v)
    return names


def grpc_run(port, keys, tenants, n_req, conc, max_tokens):
    from serving.client import CompletionClient

    def one(i):
        t = tenants[i % len(tenants)]
        with CompletionClient("127.0.0.1", port, keys[t]) as c:
            t0 = time.perf_counter()
            r = c.complete(prefix=PROMPTS[i % len(PROMPTS)], path="m.py", max_tokens=max_tokens)
            return (time.perf_counter() - t0) * 1000, r["completion_tokens"]

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(conc) as pool:
        out = list(pool.map(one, range(n_req)))
    wall = time.perf_counter() - t0
    lat = [x for x, _ in out]
    return {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "tok_s": sum(t for _, t in out) / wall}


async def inproc_run(engine, settings, home, tenants, n_req, conc, max_tokens, with_adapters):
    from tokenizers import Tokenizer

    from codetailor import prompt_format as pf
    from codetailor.home import Home
    from engine.protocol import GenerationRequest
    from engine.resolver import AdapterResolver

    res = AdapterResolver(Home(home))
    tok = Tokenizer.from_file(str(engine.model_path / "tokenizer.json"))
    count = lambda t: len(tok.encode(t, add_special_tokens=False).ids)  # noqa: E731
    sem = asyncio.Semaphore(conc)

    async def one(i):
        t = tenants[i % len(tenants)]
        prompt = pf.build(pf.PromptParts(path="m.py", prefix=PROMPTS[i % len(PROMPTS)]), count,
                          settings.prompt.budget_tokens).text
        ref = res.ref_for(t) if with_adapters else None
        async with sem:
            t0 = time.perf_counter()
            r = await engine.generate(GenerationRequest(prompt=prompt, max_tokens=max_tokens, adapter=ref,
                                                        request_id=f"b{i}-{time.time_ns()}"))
            return (time.perf_counter() - t0) * 1000, r.completion_tokens

    t0 = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n_req)))
    wall = time.perf_counter() - t0
    lat = [x for x, _ in out]
    return {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "tok_s": sum(t for _, t in out) / wall}


def front_only(port, key, n=200):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from serving.client import ClientError, CompletionClient

    lat, hl = [], []
    with CompletionClient("127.0.0.1", port, key) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                c.complete(prefix=" ", max_tokens=1)
            except ClientError:
                pass
            lat.append((time.perf_counter() - t0) * 1000)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(n):
            t0 = time.perf_counter()
            stub.Check(health_pb2.HealthCheckRequest())
            hl.append((time.perf_counter() - t0) * 1000)
    return {"front_auth_validate_p50_ms": statistics.median(lat), "grpc_health_p50_ms": statistics.median(hl)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", default="0,1,8,64")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    a = ap.parse_args()
    counts = [int(x) for x in a.adapters.split(",")]

    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry
    base = ROOT / ".home" / "test" / "models" / "smollm2-135m-instruct"
    work = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    homes, keys = {}, {}
    for n in counts:
        h = work / f"h{n}"
        names = make_tenants(h, base, n)
        homes[n] = (h, names)
        for t in names:
            keys[(n, t)] = Registry(Home(h), "bench-pepper").create_key(t, "developer")
    # One home with all tenants of every run, so one stack serves them all.
    home = work / "all"
    (home / "tenants").mkdir(parents=True)
    for n, (h, names) in homes.items():
        for t in names:
            shutil.copytree(h / "tenants" / t, home / "tenants" / f"n{n}-{t}")
            (home / "tenants" / f"n{n}-{t}" / "tenant.json").write_text(json.dumps({"name": f"n{n}-{t}", "created_at": 0, "sources": {}}))
    reg = Registry(Home(home), "bench-pepper")
    tenants = {n: [f"n{n}-{t}" for t in names] for n, (h, names) in homes.items()}
    keys = {t: reg.create_key(t, "developer") for ts in tenants.values() for t in ts}
    engine_cfg = {"dtype": "bfloat16", "max_model_len": 1024, "kv_cache_gib": 1, "max_num_seqs": 16,
                  "max_loras": 8, "max_lora_rank": 8, "max_cpu_loras": 72}
    settings = load_settings(home=home, key_pepper="bench-pepper", model={"base": str(base)}, engine=engine_cfg,
                             serving={"tenant_concurrency": 64, "metrics_port": 18089})
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
               "requests": a.requests, "concurrency": a.concurrency, "max_tokens": a.max_tokens, "runs": {}}

    from serving.app import start_stack
    from serving.front import FrontServer
    stack = start_stack(settings, num_cpus=os.cpu_count())
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    front = FrontServer(settings, stack.ingress, stack.model)
    port = asyncio.run_coroutine_threadsafe(front.start(port=0), loop).result(60)
    try:
        grpc_run(port, keys, tenants[counts[0]], 4, 2, a.max_tokens)  # warm-up
        results["front"] = front_only(port, keys[tenants[counts[0]][0]])
        for n in counts:
            grpc_run(port, keys, tenants[n], min(len(tenants[n]), 64), a.concurrency, 2)  # load the adapters
            results["runs"][n] = {"grpc": grpc_run(port, keys, tenants[n], a.requests, a.concurrency, a.max_tokens)}
            print(n, results["runs"][n], flush=True)
    finally:
        asyncio.run_coroutine_threadsafe(front.stop(0.5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        stack.stop()

    from engine.vllm_engine import VllmEngine

    async def inproc():
        engine = VllmEngine.start(settings, base)
        try:
            await inproc_run(engine, settings, home, tenants[counts[0]], 4, 2, a.max_tokens, False)
            for n in counts:
                await inproc_run(engine, settings, home, tenants[n], min(len(tenants[n]), 64), a.concurrency, 2, n > 0)
                results["runs"][n]["in_process"] = await inproc_run(engine, settings, home, tenants[n], a.requests,
                                                                    a.concurrency, a.max_tokens, n > 0)
                g, p = results["runs"][n]["grpc"], results["runs"][n]["in_process"]
                results["runs"][n]["stack_adds_p50_ms"] = g["p50_ms"] - p["p50_ms"]
                print(n, results["runs"][n], flush=True)
        finally:
            await engine.shutdown()

    asyncio.run(inproc())
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
