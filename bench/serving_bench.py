"""Serving benchmark: what the gRPC + Ray Serve stack adds to the engine.

    .venv/bin/python bench/serving_bench.py [--adapters 0,1,8,64] [--requests 24] [--concurrency 4] \
        [--max-tokens 16] [--out bench/out/serving.json]

For 0, 1, 8 and 64 tenants' adapters, one fixed list of requests (round-robin over the tenants, four
short Python prompts, greedy) is sent at fixed concurrency
  - through gRPC: client -> the front server in the Ingress replica -> Serve Model replica -> engine, and
  - to the engine in process (a fresh subprocess builds the engine and nothing else, with the prompts
    the ingress would build and the same adapters),
reporting p50/p95 end-to-end latency and completion tokens/s for each. Because the shared machine's
load drifts between runs, the stack's cost is also measured inside each request: end-to-end minus
the engine's own generation time (`generation_ms`, timed in the engine around vLLM's generate), p50,
for both paths; their difference is what the stack adds. Its parts are measured alone too:
  - the front server alone: a Complete through a FrontServer (in this process) whose ingress answers at once
    (auth, validation, metrics, response), an INVALID_ARGUMENT round trip, a gRPC health check;
  - one Serve handle hop: driver -> Ingress.count_tokens and driver -> Model.count_tokens.
Tenant/adapter creation (torch + peft) runs in its own subprocess too, so neither the bench process
(which hosts the front server) nor the in-process engine shares a process with it.

The per-tenant prefix-cache salt (serving.tenant_cache_salt) is measured in the in-process engine,
`--salt-pairs N` (alone: `--salt-only`): two base-model tenants send the same ~600-token prompt, A then B,
salted (as serving sends them) and unsalted, interleaved pair by pair in one engine. Unsalted, B reuses
A's cached prefix; salted it prefills again. B's latency salted vs unsalted is the salt's cost, and the
unsalted gap between A and B is what a timing probe could see without it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The base model the tests fetch (CODETAILOR_TEST_HOME, as the tests read it; default the tree's .home/test).
BASE = Path(os.environ.get("CODETAILOR_TEST_HOME", ROOT / ".home" / "test")) / "models" / "smollm2-135m-instruct"
PEPPER = "bench-pepper"
ENGINE = {"dtype": "bfloat16", "max_model_len": 1024, "kv_cache_gib": 1, "max_num_seqs": 16,
          "max_loras": 8, "max_lora_rank": 8, "max_cpu_loras": 72}
PROMPTS = ["def fibonacci(n):\n    if n < 2:\n        return n\n    return",
           "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n",
           "import json\n\ndef load(path):\n    with open(path) as f:\n        return",
           "def is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2,"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


def summarise(rows: list[dict], wall_s: float) -> dict:
    """rows: {"e2e_ms", "gen_ms", "tokens"} per request."""
    e2e = [r["e2e_ms"] for r in rows]
    over = [r["e2e_ms"] - r["gen_ms"] for r in rows]
    return {"p50_ms": pct(e2e, 50), "p95_ms": pct(e2e, 95), "tok_s": sum(r["tokens"] for r in rows) / wall_s,
            "outside_engine_p50_ms": pct(over, 50), "outside_engine_p95_ms": pct(over, 95),
            "completion_tokens": sum(r["tokens"] for r in rows), "n": len(rows)}


def settings_for(home: Path):
    from codetailor.config import load_settings

    return load_settings(home=home, key_pepper=PEPPER, model={"base": str(BASE)}, engine=ENGINE,
                         serving={"tenant_concurrency": 64, "metrics_port": 18089, "max_queued_requests": 512})


def plan(tenants: list[str], n_req: int, max_tokens: int) -> list[dict]:
    return [{"tenant": tenants[i % len(tenants)], "prefix": PROMPTS[i % len(PROMPTS)], "path": "m.py",
             "max_tokens": max_tokens} for i in range(n_req)]


# -- subprocess 1: tenants and adapters (torch + peft) ------------------------------------------------

def make_home(home: Path, counts: list[int]) -> dict:
    """Tenants n<N>-t<i> (N = adapters of that run; one base-only tenant for N = 0), each with its own
    adapter version (one random rank-8 LoRA, copied: distinct versions and uids). Returns keys."""
    from codetailor.adapters import AdapterStore
    from codetailor.artifacts import AdapterMeta, BaseModelRecord
    from codetailor.home import Home
    from codetailor.model import model_checksum
    from codetailor.tenants import Registry
    from tests.fixtures.serving import make_adapter

    reg = Registry(Home(home), PEPPER)
    keys, tenants, first = {}, {}, None
    checksum = model_checksum(BASE)
    for n in counts:
        tenants[n] = []
        for i in range(max(n, 1)):
            name = f"n{n}-t{i:02d}"
            paths, _ = reg.create_tenant(name)
            keys[name] = reg.create_key(name, "developer")
            tenants[n].append(name)
            if n == 0:
                continue
            store = AdapterStore(paths)
            if first is None:
                v = make_adapter(paths, BASE, seed=1)
                first = store.path(v)
            else:
                with store.new_version() as staged:
                    for f in ("adapter_config.json", "adapter_model.safetensors"):
                        shutil.copy(first / f, staged.dir / f)
                    staged.meta = AdapterMeta(base_model=BaseModelRecord(checksum=checksum))
                v = staged.version
            store.set_active(v)
    return {"keys": keys, "tenants": {str(n): t for n, t in tenants.items()}}


# -- subprocess 2: the same requests to the engine in process -----------------------------------------

async def _inproc(home: Path, runs: dict, concurrency: int, salt_pairs: int = 0) -> dict:
    from tokenizers import Tokenizer

    from codetailor import completion
    from codetailor.adapters import AdapterStore
    from codetailor.home import Home
    from engine.protocol import GenerationRequest
    from engine.resolver import AdapterResolver
    from engine.vllm_engine import VllmEngine

    settings = settings_for(home)
    t0 = time.perf_counter()
    engine = VllmEngine.start(settings, BASE)
    import torch

    out = {"engine_start_s": time.perf_counter() - t0, "runs": {}, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "torch_threads": torch.get_num_threads()}
    h = Home(home)
    resolver = AdapterResolver(h)
    tok = Tokenizer.from_file(str(BASE / "tokenizer.json"))
    count = lambda t: len(tok.encode(t, add_special_tokens=False).ids)  # noqa: E731

    def prepared(r: dict) -> GenerationRequest:  # what serving.ingress._prepare builds (no index: no snippets)
        paths = h.tenant(r["tenant"])
        ref = resolver.ref_for(paths.tenant) if AdapterStore(paths).serving_system().uses_adapter else None
        budget = completion.prompt_budget(settings.prompt.budget_tokens, settings.engine.max_model_len,
                                          r["max_tokens"])
        p = completion.prompt(completion.Cursor(r["prefix"], "", r["path"]), (), count=count, budget=budget,
                              prompt_cfg=settings.prompt)
        return GenerationRequest(prompt=p.text, max_tokens=r["max_tokens"], adapter=ref, heal=p.heal)

    async def run(reqs: list[dict]) -> dict:
        sem = asyncio.Semaphore(concurrency)

        async def one(i, r):
            async with sem:
                t = time.perf_counter()
                g = prepared(r)
                res = await engine.generate(dataclasses.replace(g, request_id=f"b{i}-{time.time_ns()}"))
                return {"e2e_ms": (time.perf_counter() - t) * 1000, "gen_ms": res.generation_ms,
                        "tokens": res.completion_tokens}

        t = time.perf_counter()
        rows = await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
        return summarise(list(rows), time.perf_counter() - t)

    try:
        if salt_pairs:
            out["salt"] = await salt_cost(engine, salt_pairs)
            print(f"in process, cache salt: {json.dumps(out['salt'])}", file=sys.stderr, flush=True)
        for n, spec in runs.items():
            await run(spec["warmup"])  # loads this run's adapters, as the gRPC side's warm-up does
            out["runs"][n] = run_res = await run(spec["measured"])
            out["runs"][n]["load_avg"] = os.getloadavg()
            print(f"in process, {n} adapters: {json.dumps(run_res)}", file=sys.stderr, flush=True)
    finally:
        await engine.shutdown()
    return out


SHARED_BODY = "".join(f"def handler_{i}(request, context):\n    value = request.payload[{i}]\n"
                      f"    context.log('handled {i}', value)\n    return value * {i}\n\n" for i in range(24))


async def salt_cost(engine, pairs: int) -> dict:
    """Latency of tenant B's request right after tenant A sent the same prompt, with and without the
    per-tenant cache salt. Each pair's prompt is new (its first line differs), so only A->B reuse counts."""
    from engine.protocol import GenerationRequest

    rows = {m: {"a": [], "b": []} for m in ("unsalted", "salted")}
    for i in range(pairs):
        for mode in (("unsalted", "salted") if i % 2 == 0 else ("salted", "unsalted")):
            prompt = f"# request {i} {mode} {time.time_ns()}\n{SHARED_BODY}def handler_next("
            for tenant in ("a", "b"):
                t = time.perf_counter()
                await engine.generate(GenerationRequest(prompt, 2, cache_salt=tenant if mode == "salted" else None))
                rows[mode][tenant].append((time.perf_counter() - t) * 1000)
    out = {"pairs": pairs, "prompt_tokens": engine.count_tokens(SHARED_BODY) + 12, "max_tokens": 2}
    for mode, r in rows.items():
        out[f"{mode}_a_p50_ms"], out[f"{mode}_b_p50_ms"] = pct(r["a"], 50), pct(r["b"], 50)
    out["salt_cost_b_p50_ratio"] = out["salted_b_p50_ms"] / out["unsalted_b_p50_ms"]
    out["load_avg"] = os.getloadavg()
    return out


async def _salt_only(pairs: int) -> dict:
    from engine.vllm_engine import VllmEngine

    with tempfile.TemporaryDirectory(prefix="ct-bench-") as d:
        engine = VllmEngine.start(settings_for(Path(d)), BASE)
        try:
            await salt_cost(engine, 2)  # warm-up
            return await salt_cost(engine, pairs)
        finally:
            await engine.shutdown()


# -- the bench process: the stack, the front server, gRPC clients ------------------------------------------

class _Instant:
    """An ingress that answers at once: times the front server alone."""

    SUMMARY = {"text": " n", "finish_reason": "length", "prompt_tokens": 20, "completion_tokens": 1,
               "system": "base", "adapter_version": "", "snippets": [], "retrieval_ms": 0.0,
               "generation_ms": 0.0, "queue_ms": 0.0}

    @staticmethod
    def calls():
        from serving.front import IngressCalls

        class Instant(IngressCalls):
            async def complete(self, req: dict) -> dict:
                return dict(_Instant.SUMMARY)
        return Instant()


def grpc_run(port: int, keys: dict, reqs: list[dict], concurrency: int) -> dict:
    """One channel per client thread (as an editor gateway keeps one), the tenant's key per request."""
    import grpc

    from serving.client import CompletionClient

    local = threading.local()

    def one(r):
        if not hasattr(local, "c"):
            local.c = CompletionClient("127.0.0.1", port, None, timeout=300)
        md = (("authorization", f"Bearer {keys[r['tenant']]}"),)
        t = time.perf_counter()
        try:
            resp = local.c.stub.Complete(CompletionClient.request(prefix=r["prefix"], path=r["path"],
                                                                  max_tokens=r["max_tokens"]), metadata=md, timeout=300)
        except grpc.RpcError as e:
            raise SystemExit(f"request failed: {e.code().name}: {e.details()}") from None
        lat = resp.info.latency
        return {"e2e_ms": (time.perf_counter() - t) * 1000, "gen_ms": lat.generation_ms,
                "tokens": resp.info.completion_tokens, "front_total_ms": lat.total_ms, "queue_ms": lat.queue_ms,
                "auth_ms": lat.auth_ms}

    t = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(one, reqs))
    res = summarise(rows, time.perf_counter() - t)
    # Where the time outside the engine goes, per request (p50s): client<->front server (channel,
    # HTTP/2, proto), inside the front server before/after the Serve call, and the ingress->model
    # leg beyond the engine's generation (the ingress' `queue_ms`: hop, multiplex routing, queueing).
    res["client_to_front_p50_ms"] = pct([r["e2e_ms"] - r["front_total_ms"] for r in rows], 50)
    res["ingress_to_model_beyond_engine_p50_ms"] = pct([r["queue_ms"] for r in rows], 50)
    res["front_and_ingress_p50_ms"] = pct([r["front_total_ms"] - r["gen_ms"] - r["queue_ms"] for r in rows], 50)
    return res


def timed(n: int, fn) -> float:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t) * 1000)
    return statistics.median(lat)


def front_alone(settings, loop, key: str, n: int) -> dict:
    """A second FrontServer (real auth, validation, metrics) with an ingress that answers at once."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from serving.client import ClientError, CompletionClient
    from serving.front import FrontServer

    front = FrontServer(settings, _Instant.calls(), None)
    port = asyncio.run_coroutine_threadsafe(front.start(port=0), loop).result(30)
    out = {}
    try:
        with CompletionClient("127.0.0.1", port, key) as c:
            for _ in range(20):
                c.complete(prefix="def f():\n    return", path="m.py", max_tokens=1)
            out["front_complete_instant_ingress_p50_ms"] = timed(
                n, lambda: c.complete(prefix="def f():\n    return", path="m.py", max_tokens=1))

            def invalid():
                try:
                    c.complete(prefix=" ", max_tokens=1)
                except ClientError:
                    pass
            out["front_invalid_argument_p50_ms"] = timed(n, invalid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            out["grpc_health_p50_ms"] = timed(n, lambda: stub.Check(health_pb2.HealthCheckRequest()))
    finally:
        asyncio.run_coroutine_threadsafe(front.stop(0.1), loop).result(30)
    return out


def shared_state_cost(settings, loop, key: str, n: int) -> dict:
    """What keeping the tenant limit and completion ids in the cluster's actor (serving/tenant_state.py)
    adds to a Complete: a FrontServer with an ingress that answers at once, its state in this process
    vs in the shared actor, at concurrency 1 and 4, in one run."""
    from serving.client import CompletionClient
    from serving.front import FrontServer
    from serving.tenant_state import LocalTenantState, SharedTenantState

    out = {}
    fronts = {"local": FrontServer(settings, _Instant.calls(), None, tenant_state=LocalTenantState()),
              "shared": FrontServer(settings, _Instant.calls(), None, tenant_state=SharedTenantState.connect())}
    ports = {k: asyncio.run_coroutine_threadsafe(f.start(port=0), loop).result(30) for k, f in fronts.items()}
    try:
        for conc in (1, 4):
            for rnd in range(2):  # alternate the two, twice, to even out the shared machine's drift
                for kind in (("local", "shared") if rnd == 0 else ("shared", "local")):
                    local = threading.local()

                    def call(_):
                        if not hasattr(local, "c"):
                            local.c = CompletionClient("127.0.0.1", ports[kind], key)
                        t = time.perf_counter()
                        local.c.complete(prefix="def f():\n    return", path="m.py", max_tokens=1)
                        return (time.perf_counter() - t) * 1000

                    with cf.ThreadPoolExecutor(conc) as pool:
                        list(pool.map(call, range(20)))  # warm-up
                        lat = list(pool.map(call, range(n)))
                    out.setdefault(f"complete_c{conc}_{kind}_p50_ms", []).append(statistics.median(lat))
        for k in list(out):
            out[k] = statistics.median(out[k])
        for conc in (1, 4):
            out[f"shared_state_adds_c{conc}_p50_ms"] = (out[f"complete_c{conc}_shared_p50_ms"]
                                                        - out[f"complete_c{conc}_local_p50_ms"])
    finally:
        for f in fronts.values():
            asyncio.run_coroutine_threadsafe(f.stop(0.1), loop).result(30)
    out["load_avg"] = os.getloadavg()
    return out


def handle_hops(stack, loop, n: int) -> dict:
    """One Serve handle call from this driver to a cheap method of each deployment."""
    def hop(handle):
        async def call():
            return await handle.count_tokens.remote("def f(): pass")
        return lambda: asyncio.run_coroutine_threadsafe(call(), loop).result(30)

    out = {}
    for name, h in (("ingress", stack.ingress), ("model", stack.model)):
        f = hop(h)
        for _ in range(10):
            f()
        out[f"serve_handle_hop_{name}_p50_ms"] = timed(n, f)
    return out


def ingress_work(settings, tenants: dict, n: int) -> dict:
    """The ingress' own work per request (tenant state, adapter ref, prompt), called in this
    process without a Ray hop, for a base-model tenant and a tenant with an adapter."""
    from serving.ingress import Ingress
    from serving.stubs import load
    from serving.validation import validate_completion

    pb = load()[0]
    ingress = Ingress(settings, None, str(BASE))
    # Its start-up warm-up loads the embedding model in a thread of this process; left running, it
    # took the CPU from the first measured row (+140 to +190 ms p50, whichever row came first).
    ingress._warm.wait(300)
    out = {}
    for label, tenant in (("base", tenants.get(0, [None])[0]), ("adapter", next(
            (t[0] for n_, t in tenants.items() if n_ > 0), None))):
        if tenant is None:
            continue
        req = pb.CompleteRequest(prefix=PROMPTS[0], path="m.py", max_tokens=16, request_id="bench")
        d = dict(validate_completion(req, settings.serving).as_dict(), tenant=tenant, deadline=None)
        out[f"ingress_prepare_{label}_p50_ms"] = timed(n, lambda: ingress._prepare(d))
    return out


class _Done(Exception):
    """--overhead-only: the measurements asked for are taken."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", default="0,1,8,64")
    ap.add_argument("--requests", type=int, default=24, help="measured requests per run")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--overhead-calls", type=int, default=200, help="calls per front/handle overhead p50")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "serving.json")
    ap.add_argument("--salt-pairs", type=int, default=12, help="tenant pairs for the cache-salt cost (0: skip)")
    ap.add_argument("--salt-only", action="store_true", help="measure only the cache-salt cost (in process)")
    ap.add_argument("--overhead-only", action="store_true",
                    help="start the stack, measure the per-request overheads (front, handles, shared tenant "
                         "state), skip the adapter runs and the in-process engine")
    ap.add_argument("--phase", choices=["make-home", "in-process"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    counts = [int(x) for x in a.adapters.split(",")]

    if a.phase == "make-home":
        (a.dir / "tenants.json").write_text(json.dumps(make_home(a.dir / "home", counts)))
        return
    if a.phase == "in-process":
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # as serving.model.ModelServer runs it
        # Ray sets OMP_NUM_THREADS=1 in a replica with num_cpus=0 (ray._private.utils); the same engine
        # here must get it too. Left unset, 2 OMP threads spin on a busy 2-core machine and the first
        # runs of this bench measured 14.7 s and 26 s p50 in process against 0.75 s through Serve.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        spec = json.loads((a.dir / "plan.json").read_text())
        res = asyncio.run(_inproc(a.dir / "home", spec["runs"], spec["concurrency"], spec.get("salt_pairs", 0)))
        (a.dir / "inproc.json").write_text(json.dumps(res))
        return

    if a.salt_only:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in a replica (see the in-process phase)
        res = {"machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}",
               "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python"] + sys.argv),
               "engine": ENGINE, "load_avg_start": os.getloadavg(), "salt": asyncio.run(_salt_only(a.salt_pairs))}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
        return

    me = [sys.executable, str(Path(__file__).resolve())]
    results = {"machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}",
               "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(["python"] + sys.argv),
               "engine": ENGINE, "requests": a.requests, "concurrency": a.concurrency, "max_tokens": a.max_tokens,
               "load_avg_start": os.getloadavg(), "runs": {}}
    work = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    try:
        print("making tenants and adapters (subprocess) ...", file=sys.stderr, flush=True)
        subprocess.run(me + ["--phase", "make-home", "--dir", str(work), "--adapters", a.adapters], check=True)
        made = json.loads((work / "tenants.json").read_text())
        keys, tenants = made["keys"], {int(n): t for n, t in made["tenants"].items()}
        runs = {n: {"warmup": plan(tenants[n], max(len(tenants[n]), 4), 2),
                    "measured": plan(tenants[n], a.requests, a.max_tokens)} for n in counts}
        settings = settings_for(work / "home")

        from serving.app import start_stack

        print("starting the serving stack ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        stack = start_stack(settings, port=0)  # its front server runs in the Ingress replica
        results["stack_start_s"] = time.perf_counter() - t0
        # The stack's Ingress loads the embedding model in a thread at start: no row may overlap it
        # (the same kind of overlap as ingress_work's below, which cost the first row +140-190 ms).
        t0 = time.perf_counter()
        while not stack.ingress.warmed.remote().result(timeout_s=60) and time.perf_counter() - t0 < 300:
            time.sleep(1)
        results["ingress_warm_wait_s"] = time.perf_counter() - t0
        loop = asyncio.new_event_loop()  # handle calls and the front-alone server of `front_alone`
        th = threading.Thread(target=loop.run_forever, daemon=True)
        th.start()
        port = stack.port
        try:
            first = tenants[counts[0]][0]
            grpc_run(port, keys, plan([first], 4, 2), 2)  # warm-up
            results["overhead"] = {**front_alone(settings, loop, keys[first], a.overhead_calls),
                                   **handle_hops(stack, loop, a.overhead_calls // 2),
                                   **ingress_work(settings, tenants, a.overhead_calls),
                                   "load_avg": os.getloadavg()}
            print(f"overhead: {json.dumps(results['overhead'])}", file=sys.stderr, flush=True)
            results["shared_tenant_state"] = shared_state_cost(settings, loop, keys[first], a.overhead_calls)
            print(f"shared tenant state: {json.dumps(results['shared_tenant_state'])}", file=sys.stderr, flush=True)
            if a.overhead_only:
                counts = []
            for n in counts:
                grpc_run(port, keys, runs[n]["warmup"], a.concurrency)  # loads this run's adapters
                results["runs"][n] = {"grpc": grpc_run(port, keys, runs[n]["measured"], a.concurrency)}
                results["runs"][n]["grpc"]["load_avg"] = os.getloadavg()
                print(f"gRPC, {n} adapters: {json.dumps(results['runs'][n]['grpc'])}", file=sys.stderr, flush=True)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            stack.stop()

        if a.overhead_only:
            raise _Done
        print("the same requests to the engine in process (fresh subprocess) ...", file=sys.stderr, flush=True)
        (work / "plan.json").write_text(json.dumps({"runs": {str(n): r for n, r in runs.items()},
                                                    "concurrency": a.concurrency, "salt_pairs": a.salt_pairs}))
        subprocess.run(me + ["--phase", "in-process", "--dir", str(work)], check=True)
        inproc = json.loads((work / "inproc.json").read_text())
        results["in_process_engine"] = {k: inproc[k] for k in ("engine_start_s", "omp_num_threads", "torch_threads")}
        if "salt" in inproc:
            results["cache_salt"] = inproc["salt"]
        for n in counts:
            r = results["runs"][n]
            r["in_process"] = p = inproc["runs"][str(n)]
            g = r["grpc"]
            r["stack_adds_p50_ms"] = g["p50_ms"] - p["p50_ms"]
            r["stack_adds_outside_engine_p50_ms"] = g["outside_engine_p50_ms"] - p["outside_engine_p50_ms"]
        results["load_avg_end"] = os.getloadavg()
    except _Done:
        results["load_avg_end"] = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
