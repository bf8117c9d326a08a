"""The real thing: `codetailor serve` (Ray Serve + the engine on CPU) scraped by a real Prometheus on
127.0.0.1 with deploy/prometheus's rules. Checks that the app's series exist and are all listed in
deploy/metrics.txt, that every rule and every dashboard expression parses on that Prometheus (its query
API) and names only series the app exports, and that every rule evaluates without error.

Skips cleanly when Prometheus is not installed or the base model is not fetched. One app and one
Prometheus for the module; the app is stopped with Ctrl-C (SIGINT) as a user would stop it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.ops import promql

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]

APP_START_TIMEOUT_S = 420   # Ray + engine start on 2 busy cores
SCRAPE_TIMEOUT_S = 90
# Series a completion, a rejected key and the app's background loops must produce.
REQUIRED = {
    "ray_codetailor_requests_total", "ray_codetailor_request_latency_ms_bucket", "ray_codetailor_tokens_total",
    "ray_codetailor_queue_depth", "ray_codetailor_engine_running_requests", "ray_codetailor_model_replicas_healthy",
    "ray_codetailor_adapters_loaded", "ray_codetailor_tenant_system", "ray_codetailor_tenant_cqi",
    "ray_codetailor_tenant_active_adapter_version", "ray_serve_deployment_replica_healthy",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail}")
        try:
            value = predicate()
            if value:
                return value
        except Exception:
            pass
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture(scope="module")
def served_app(base_model_path, tmp_path_factory):
    """`codetailor serve` on free loopback ports, with one tenant and a developer key."""
    root = tmp_path_factory.mktemp("ops-app")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODETAILOR_")}
    metrics_port, grpc_port = _free_port(), _free_port()
    env.update({
        "CODETAILOR_HOME": str(root / "home"),
        "CODETAILOR_MODEL__BASE": str(base_model_path),
        "CODETAILOR_ENGINE__DTYPE": "float32",
        "CODETAILOR_ENGINE__MAX_MODEL_LEN": "1024",
        "CODETAILOR_ENGINE__KV_CACHE_GIB": "1",
        "CODETAILOR_ENGINE__MAX_NUM_SEQS": "8",
        "CODETAILOR_SERVING__METRICS_PORT": str(metrics_port),
        # one tenant's load must be able to queue in Serve in front of the model (test_every_alerts_metric_moves_under_load)
        "CODETAILOR_SERVING__TENANT_CONCURRENCY": "64",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    })
    # Tenant and key through the app's own registry, in the app's home.
    code = ("import json; from codetailor.config import load_settings; from codetailor.tenants import registry_from_settings;"
            "r = registry_from_settings(load_settings()); r.create_tenant('opsacme');"
            "print(json.dumps(r.create_key('opsacme', 'developer')))")
    # A second tenant whose active adapter is corrupt: its requests count adapter-load failures.
    broken = textwrap.dedent("""
        import json
        from codetailor.adapters import AdapterStore
        from codetailor.config import load_settings
        from codetailor.tenants import registry_from_settings
        r = registry_from_settings(load_settings())
        paths, _ = r.create_tenant('opsbroken')
        store = AdapterStore(paths)
        with store.new_version() as staged:
            (staged.dir / 'adapter_config.json').write_text('{}')   # no rank: the engine cannot load it
            (staged.dir / 'adapter_model.safetensors').write_bytes(b'x')
        store.set_active(staged.version)
        print(json.dumps(r.create_key('opsbroken', 'developer')))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout.strip().splitlines()[-1])
    out = subprocess.run([sys.executable, "-c", broken], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    broken_key = json.loads(out.stdout.strip().splitlines()[-1])

    log = root / "serve.log"
    exe = str(Path(sys.executable).with_name("codetailor"))
    with open(log, "w") as f:
        proc = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(grpc_port)], env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy():
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
                return r.status == health_pb2.HealthCheckResponse.SERVING

        _wait(healthy, APP_START_TIMEOUT_S, "codetailor serve to become healthy", proc, log)
        yield {"env": env, "grpc_port": grpc_port, "metrics_port": metrics_port, "key": key, "exe": exe, "log": log,
               "broken_key": broken_key}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def prometheus(served_app, tmp_path_factory):
    """A real Prometheus scraping the app every second, with the project's rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    root = tmp_path_factory.mktemp("prometheus")
    cfg = yaml.safe_load((promql.DEPLOY / "prometheus" / "prometheus-local.yml").read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    cfg["rule_files"] = [str(promql.RULES_FILE)]
    cfg["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{served_app['metrics_port']}"]}]
    (root / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = _free_port()
    log = root / "prometheus.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200, 60, "Prometheus ready", proc, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def traffic(served_app):
    """Completions with a good key and one with a bad key, through the real gRPC client command."""
    app = served_app
    base = [app["exe"], "complete", "--host", "127.0.0.1", "--port", str(app["grpc_port"]),
            "--prefix", "def add(a, b):\n    return", "--max-tokens", "2", "--json"]
    for _ in range(3):
        r = subprocess.run(base + ["--api-key", app["key"]], env=app["env"], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(base + ["--api-key", "ct_not_a_real_key"], env=app["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "UNAUTHENTICATED" in (r.stdout + r.stderr)
    return True


def _names(prom: str) -> set[str]:
    return set(_get(f"{prom}/api/v1/label/__name__/values")["data"])


def test_app_series_exist_and_are_listed(prometheus, traffic):
    names = _wait(lambda: (n := _names(prometheus)) >= REQUIRED and n, SCRAPE_TIMEOUT_S,
                  f"series {sorted(REQUIRED)} in Prometheus")
    listed = promql.exported_names(promql.listed_metrics())
    app_series = {n for n in names if n.startswith("ray_codetailor_")}
    print(f"app series scraped ({len(app_series)}): {sorted(app_series)}")
    assert app_series <= listed, f"the app exports series deploy/metrics.txt does not list: {sorted(app_series - listed)}"
    serve_listed = {n for n, kind in promql.listed_metrics().items() if kind == "serve"}
    assert serve_listed <= names, f"Ray Serve series missing: {sorted(serve_listed - names)}"
    up = _get(f"{prometheus}/api/v1/query?query=" + urllib.parse.quote('up{job="codetailor"}'))["data"]["result"]
    assert up and up[0]["value"][1] == "1"


def test_every_expression_parses_and_names_exported_series(prometheus, traffic):
    import serving.metrics  # noqa: F401  (the app's definitions: recorded on first use, so maybe unseen yet)

    defined = {n for n in promql.exported_names(promql.listed_metrics()) if n.startswith("ray_codetailor_")}
    exported = _names(prometheus) | defined | promql.recorded_names()
    exprs = [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in promql.rules()]
    exprs += [(f"{d} / {t}", promql.substitute_variables(e)) for d, t, e in promql.dashboard_exprs()]
    print(f"checking {len(exprs)} expressions on Prometheus")
    for where, expr in exprs:
        url = f"{prometheus}/api/v1/query?query=" + urllib.parse.quote(expr)
        try:
            body = _get(url)
        except urllib.error.HTTPError as e:
            pytest.fail(f"{where}: Prometheus rejects {expr!r}: {e.read().decode()[:300]}")
        assert body["status"] == "success", f"{where}: {body}"
        missing = promql.metric_names(expr) - exported
        assert not missing, f"{where}: names series the app does not export: {missing}"


def test_rules_evaluate_without_errors(prometheus, traffic):
    def evaluated():
        groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = _wait(evaluated, 30, "every rule evaluated once")
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad


# Every series an alert reads, and what the load below does to it: it must move, or (for health flags
# that only fall when something breaks) read healthy. A series in no list fails the test: an alert on
# a series nothing feeds can never fire.
MOVED_BY_LOAD = {
    "ray_codetailor_requests_total", "ray_codetailor_request_latency_ms_bucket", "ray_codetailor_outcomes_total",
    "ray_serve_deployment_queued_queries",        # more concurrent requests than the replica takes
    "ray_codetailor_adapter_load_failures_total",  # the tenant whose active adapter is corrupt
}
HEALTH_FLAGS = {"ray_codetailor_model_replicas_healthy": True,
                "ray_codetailor_retrieval_backend_up": False}   # set once a tenant with an index completes


def _load(app, n: int = 32) -> None:
    """n concurrent completions (more than the replica's max_num_seqs), outcomes for some, and
    requests of the tenant whose adapter is corrupt."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.client import CompletionClient

    def one(i: int) -> None:
        key = app["broken_key"] if i % 8 == 0 else app["key"]
        with CompletionClient("127.0.0.1", app["grpc_port"], key) as c:
            r = c.complete(prefix=f"def f{i}(a, b):\n    return", max_tokens=24, timeout=300)
            if key == app["key"] and i % 2:
                c.report_outcome(r["id"], "accepted" if i % 4 == 1 else "rejected")

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, range(n)))


def test_every_alerts_metric_moves_under_load(prometheus, traffic, served_app):
    alert_series = set()
    recorded = {r["record"]: r["expr"] for r in promql.rules() if "record" in r}
    for r in promql.rules():
        if "alert" in r:
            names = promql.metric_names(r["expr"])
            for rec in names & set(recorded):
                names |= promql.metric_names(recorded[rec])
            alert_series |= {n for n in names if n not in recorded}
    unclassified = alert_series - MOVED_BY_LOAD - set(HEALTH_FLAGS)
    assert not unclassified, f"alerts read series this test does not know how to move: {unclassified}"

    def value(q: str) -> float:
        result = _get(f"{prometheus}/api/v1/query?query=" + urllib.parse.quote(q))["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    _load(served_app)
    for name in sorted(MOVED_BY_LOAD & alert_series):
        # Moved: it changed, or left zero (Ray exports a counter only once incremented, so its
        # first scraped value may already be the last).
        _wait(lambda: value(f"sum(changes({name}[10m]))") > 0 or value(f"max(max_over_time({name}[10m]))") > 0,
              SCRAPE_TIMEOUT_S, f"{name} to move under load")
    for name, required in HEALTH_FLAGS.items():
        result = _get(f"{prometheus}/api/v1/query?query=" + urllib.parse.quote(f"min({name})"))["data"]["result"]
        if required or result:
            assert result and float(result[0]["value"][1]) >= 1, f"{name} does not read healthy: {result}"
