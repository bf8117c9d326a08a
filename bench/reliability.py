"""Reliability run: isolation at volume, overload at twice the measured
capacity, and a model replica killed under load. Starts its own stack (private
Ray cluster, Serve app, real vLLM engine, gRPC front server) in a temp home.

    .venv/bin/python bench/reliability.py [--tenants 22] [--requests 10000] [--concurrency 8]
        [--phases isolation,overload,kill] [--out bench/out/reliability.json]

Phases:
- isolation: `--requests` random requests (normal lengths, max_tokens 8..48) of
  `--tenants` tenants whose repos share file names and identifiers, each with a
  canary and its own adapter (tests/reliability/world.py); every response's
  provenance (adapter_version, system, snippet locations, text) is checked.
- overload: capacity = completed requests/s of a closed loop at `--concurrency`;
  then an open loop at 2x that rate for `--overload-s` seconds (a noisy tenant
  sends 80%, others the rest) while a quiet tenant asks one request at a time. Reports
  how fast RESOURCE_EXHAUSTED comes back, the quiet tenant's success rate,
  the cluster's RSS over time, and the time to the first success after the load.
- sockets: every listening socket of the cluster's processes that is not loopback.
- kill: SIGKILL the model replica's process under load; reports the in-flight
  requests' status codes (hangs are counted as such) and the seconds until a new
  request succeeds.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import os
import platform
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import add_options  # noqa: E402

# every tenant's adapter fits the host-side cache and a batch slot (no reload or slot churn: with
# 8 slots for 22 tenants the run managed 1.5 req/s), 16 sequences, and both cores for the engine
# (Ray would give the replica one thread; the ingress needs little). Provenance is checked from
# each response's adapter version, snippets and text, so bf16 loses nothing here.
ENGINE = {"dtype": "bfloat16", "max_model_len": 1024, "kv_cache_gib": 1, "max_num_seqs": 16,
          "max_loras": 24, "max_lora_rank": 8, "max_cpu_loras": 32, "threads": os.cpu_count() or 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="ct-rel-"))

    # -- setup ---------------------------------------------------------------------------
    def start(self):
        from codetailor.config import load_settings
        from codetailor.model import resolve_base_model
        from serving.app import start_stack
        from tests.reliability.world import build_world

        home = self.tmp / "home"
        self.settings = load_settings(home=home, key_pepper="bench-pepper", model={"base": self.args.base},
                                      engine=ENGINE, serving={"metrics_port": free_port(),
                                                              "max_tokens_limit": 256})
        base = resolve_base_model(self.settings)
        t0 = time.time()
        log(f"building {self.args.tenants} tenants (repos, indexes, adapters)")
        self.world = build_world(self.settings, base, self.tmp / "repos", self.args.tenants)
        from retrieval.vectors import close_edge_shards

        close_edge_shards()
        self.setup_s = time.time() - t0
        log("starting the stack")
        self.stack = start_stack(self.settings, port=0)  # the front server runs in the Ingress replica
        self.port = self.stack.port
        self.clients = {}
        log(f"front server on 127.0.0.1:{self.port}")

    def stop(self):
        try:
            self.stack.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def client(self, tenant: str):
        from serving.client import CompletionClient

        if tenant not in self.clients:
            self.clients[tenant] = CompletionClient("127.0.0.1", self.port, self.world[tenant].dev_key, timeout=120)
        return self.clients[tenant]

    def ask(self, tenant: str, fields: dict, timeout: float = 120) -> tuple[str, float, dict | None]:
        from serving.client import ClientError

        t0 = time.perf_counter()
        try:
            r = self.client(tenant).complete(timeout=timeout, **fields)
            return "OK", (time.perf_counter() - t0) * 1000, r
        except ClientError as e:
            return e.code, (time.perf_counter() - t0) * 1000, None

    # -- phases ----------------------------------------------------------------------------
    def isolation(self) -> dict:
        from tests.reliability.world import leaks, request_for

        rng = random.Random(2024)
        jobs = []
        for _ in range(self.args.requests):
            tenant, fields = request_for(rng, self.world, max_tokens=rng.randint(8, 48))
            jobs.append((tenant, fields))
        codes, lat, problems, snippets, tokens = collections.Counter(), [], [], 0, 0
        lock = threading.Lock()
        done = [0]

        def one(job):
            nonlocal snippets, tokens
            tenant, fields = job
            for attempt in range(100):
                code, ms, r = self.ask(tenant, fields)
                if code != "RESOURCE_EXHAUSTED":
                    break
                time.sleep(0.05 * min(attempt + 1, 10))
            with lock:
                codes[code] += 1
                done[0] += 1
                if r is not None:
                    lat.append(ms)
                    tokens += r["completion_tokens"]
                    snippets += bool(r["snippets"])
                    bad = leaks(self.world, tenant, r)
                    if bad:
                        problems.append({"tenant": tenant, "problems": bad})
                if done[0] % 500 == 0:
                    log(f"isolation: {done[0]}/{len(jobs)} done, {len(problems)} leaks, codes {dict(codes)}")

        t0 = time.time()
        with cf.ThreadPoolExecutor(self.args.concurrency) as pool:
            list(pool.map(one, jobs))
        wall = time.time() - t0
        return {"requests": len(jobs), "tenants": len(self.world), "codes": dict(codes), "leaks": len(problems),
                "leak_examples": problems[:5], "with_snippets": snippets, "completion_tokens": tokens,
                "wall_s": round(wall, 1), "req_per_s": round(len(jobs) / wall, 2),
                "latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95)}

    def _rss_mb(self) -> float:
        import psutil

        me = psutil.Process()
        total = 0
        for p in [me] + me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return round(total / 2**20)

    def overload(self) -> dict:
        from tests.reliability.world import request_for

        rng = random.Random(7)
        tenants = sorted(self.world)
        noisy, quiet = tenants[0], tenants[-1]
        fields = lambda: request_for(rng, self.world, max_tokens=16)[1]  # noqa: E731
        # 1. capacity: a closed loop at --concurrency over several tenants
        done, t_end = [0], time.time() + self.args.capacity_s
        lock = threading.Lock()

        def closed(i):
            t = tenants[i % len(tenants)]
            while time.time() < t_end:
                code, _, _ = self.ask(t, fields())
                if code == "OK":
                    with lock:
                        done[0] += 1

        with cf.ThreadPoolExecutor(self.args.concurrency) as pool:
            list(pool.map(closed, range(self.args.concurrency)))
        capacity = done[0] / self.args.capacity_s
        rate = 2 * capacity
        log(f"capacity {capacity:.2f} req/s; overload at {rate:.2f} req/s for {self.args.overload_s} s")
        # 2. open loop at 2x capacity; the quiet tenant asks one at a time
        quiet_idle = [self.ask(quiet, fields())[1] for _ in range(3)]
        results, quiet_results, rss = [], [], [self._rss_mb()]
        stop_at = time.time() + self.args.overload_s
        pool = cf.ThreadPoolExecutor(256)

        def fire(t, f, sink):
            sink.append((t,) + self.ask(t, f, timeout=60)[:2])

        def quiet_loop():  # one request at a time, a second apart: far below its fair share
            while time.time() < stop_at:
                fire(quiet, fields(), quiet_results)
                time.sleep(1.0)

        quiet_thread = threading.Thread(target=quiet_loop, daemon=True)
        quiet_thread.start()
        n, next_at = 0, time.time()
        while time.time() < stop_at:
            t = noisy if rng.random() < 0.8 else rng.choice(tenants[1:-1])
            pool.submit(fire, t, fields(), results)
            n += 1
            next_at += rng.expovariate(rate)
            time.sleep(max(0.0, next_at - time.time()))
            if n % 20 == 0:
                rss.append(self._rss_mb())
        sent_at_end = n
        pool.shutdown(wait=True)
        quiet_thread.join()
        rss.append(self._rss_mb())
        # 3. recovery: the first success after the load stops
        t0, recovered = time.time(), None
        while time.time() - t0 < 120:
            if self.ask(noisy, fields())[0] == "OK":
                recovered = round(time.time() - t0, 2)
                break
            time.sleep(0.5)
        by_code = collections.Counter(c for _, c, _ in results)
        rejected = [ms for _, c, ms in results if c == "RESOURCE_EXHAUSTED"]
        ok = [ms for _, c, ms in results if c == "OK"]
        quiet_codes = collections.Counter(c for _, c, _ in quiet_results)
        return {"capacity_req_per_s": round(capacity, 2), "offered_req_per_s": round(rate, 2),
                "sent": sent_at_end, "codes": dict(by_code),
                "rejected_ms_p50": pct(rejected, 50), "rejected_ms_p95": pct(rejected, 95),
                "ok_ms_p50": pct(ok, 50), "ok_ms_p95": pct(ok, 95), "ok_ms_max": pct(ok, 100),
                "noisy_tenant": noisy, "quiet_tenant": quiet, "quiet_codes": dict(quiet_codes),
                "quiet_ok_ms_p50": pct([ms for _, c, ms in quiet_results if c == "OK"], 50),
                "quiet_ok_ms_p95": pct([ms for _, c, ms in quiet_results if c == "OK"], 95),
                "quiet_idle_ms_p50": pct(quiet_idle, 50),
                "rss_mb_start": rss[0], "rss_mb_max": max(rss), "rss_mb_end": rss[-1],
                "recovered_after_s": recovered}

    def sockets(self) -> dict:
        """Listening sockets of this process and every process of the cluster."""
        import psutil

        me = psutil.Process()
        seen = []
        for p in [me] + me.children(recursive=True):
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        seen.append((p.name()[:40], c.laddr.ip, c.laddr.port))
            except psutil.Error:
                pass
        loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        return {"listening": len(seen), "not_loopback": [s for s in seen if s[1] not in loopback]}

    def kill(self) -> dict:
        import psutil

        from tests.reliability.world import request_for

        rng = random.Random(11)
        tenants = sorted(self.world)
        results, stop = [], threading.Event()

        def load(i):
            while not stop.is_set():
                t0 = time.time()
                code, ms, _ = self.ask(tenants[i], request_for(rng, self.world, 32)[1], timeout=90)
                results.append((t0, time.time(), code))

        pool = cf.ThreadPoolExecutor(4)
        for i in range(4):
            pool.submit(load, i)
        time.sleep(10)
        replicas = [p for p in psutil.Process().children(recursive=True)
                    if "ServeReplica:codetailor:Model" in " ".join(p.cmdline())]
        assert replicas, "no model replica process found"
        killed_at = time.time()
        for p in replicas:
            os.kill(p.pid, signal.SIGKILL)
        log(f"killed model replica pid(s) {[p.pid for p in replicas]}")
        first_ok = None
        while time.time() - killed_at < 240:
            if any(code == "OK" and start > killed_at for start, _, code in results):
                first_ok = min(end for start, end, code in results if code == "OK" and start > killed_at)
                break
            time.sleep(0.5)
        time.sleep(5)
        stop.set()
        pool.shutdown(wait=True)
        in_flight = [(code, round(end - killed_at, 1)) for start, end, code in results if start < killed_at < end]
        after = collections.Counter(code for start, _, code in results if start > killed_at)
        return {"in_flight_at_kill": collections.Counter(c for c, _ in in_flight),
                "in_flight_answered_within_s": max((s for _, s in in_flight), default=None),
                "requests_after_kill": dict(after),
                "first_success_after_kill_s": None if first_ok is None else round(first_ok - killed_at, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_options(ap, tenants=22, requests=10_000, concurrency=8, capacity_s=60.0, overload_s=60.0,
                phases="sockets,isolation,overload,kill")
    ap.add_argument("--pin-ray-loopback", action="store_true",
                    help="set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so Ray keeps 127.0.0.1 as its node address")
    ap.add_argument("--base", default=str(ROOT / ".home" / "test" / "models" / "smollm2-135m-instruct"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "reliability.json"))
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if args.pin_ray_loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    bench = Bench(args)
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"}
    bench.start()
    try:
        out["setup_s"] = round(bench.setup_s, 1)
        for phase in args.phases.split(","):
            log(f"phase {phase}")
            out[phase] = getattr(bench, phase)()
            log(f"{phase}: {json.dumps(out[phase], default=str)}")
    finally:
        bench.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
