"""The serving stack end to end: real gRPC, real Ray Serve, real vLLM engine on CPU.

One stack per session (tests/fixtures/serving.py). Keep requests short.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import urllib.request

import grpc
import pytest

from serving.client import ClientError

pytestmark = [pytest.mark.integration, pytest.mark.engine, pytest.mark.model]

PREFIX = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"
# Ends outside a word, so no token healing: the HF references below are plain greedy decoding.
FIELDS = dict(prefix=PREFIX + " fibonacci(", path="maths.py", max_tokens=8)


def _code(fn) -> str:
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.code


def hf_reference(stack, version: str | None, tenant: str, fields: dict) -> str:
    """The same prompt through transformers (+ PEFT with the tenant's adapter), greedy, float32."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codetailor import prompt_format as pf
    from codetailor.adapters import AdapterStore
    from codetailor.home import Home

    s = stack.settings
    tok = Tokenizer.from_file(str(stack.base_model / "tokenizer.json"))
    count = lambda t: len(tok.encode(t, add_special_tokens=False).ids)  # noqa: E731
    built = pf.build(pf.PromptParts(path=fields["path"], prefix=fields["prefix"]), count,
                     min(s.prompt.budget_tokens, s.engine.max_model_len - fields["max_tokens"]),
                     max_suffix_lines=s.prompt.max_suffix_lines, min_prefix_share=s.prompt.min_prefix_share)
    hf_tok = AutoTokenizer.from_pretrained(stack.base_model)
    model = AutoModelForCausalLM.from_pretrained(stack.base_model, dtype=torch.float32)
    if version:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, AdapterStore(Home(stack.home).tenant(tenant)).path(version))
    ids = hf_tok(built.text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=fields["max_tokens"], do_sample=False)
    return hf_tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_unary_and_stream_agree(serving_stack):
    with serving_stack.client("gamma") as c:
        r = c.complete(**FIELDS)
        chunks = list(c.stream(**FIELDS))
    assert r["text"] and r["system"] == "base" and r["adapter_version"] == ""
    assert r["completion_tokens"] > 0 and r["prompt_tokens"] > 0
    assert r["latency_ms"]["total"] >= r["latency_ms"]["generation"] > 0
    assert "".join(ch["text"] for ch in chunks) == r["text"]
    assert chunks[-1]["finish_reason"] and len({ch["id"] for ch in chunks}) == 1


def test_a_cursor_inside_a_word_is_healed(serving_stack):
    """Token healing end to end: the client gets the rest of the word, not a new one."""
    fields = dict(prefix=PREFIX + " fibon", path="maths.py", max_tokens=8)
    with serving_stack.client("gamma") as c:
        r = c.complete(**fields)
        streamed = "".join(ch["text"] for ch in c.stream(**fields))
    assert r["text"].startswith("acci("), r["text"]
    assert streamed == r["text"]


def test_three_tenants_get_their_own_adapter(serving_stack):
    v = serving_stack.versions
    expected = {"alpha": hf_reference(serving_stack, v["alpha"][0], "alpha", FIELDS),
                "beta": hf_reference(serving_stack, v["beta"][0], "beta", FIELDS),
                "gamma": hf_reference(serving_stack, None, "gamma", FIELDS)}
    assert len(set(expected.values())) == 3, "the test adapters must change the output"

    def ask(tenant):
        with serving_stack.client(tenant) as c:
            return tenant, c.complete(**FIELDS)

    with cf.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, ["alpha", "beta", "gamma"] * 2))
    for tenant, r in results:
        assert r["text"] == expected[tenant], tenant
        assert r["adapter_version"] == (v[tenant][0] if tenant != "gamma" else "")
        assert r["system"] == ("ft" if tenant != "gamma" else "base")


def test_status_codes(serving_stack):
    from codetailor.home import Home
    from codetailor.tenants import Registry
    from serving.stubs import load

    pb, pb_grpc, apb, apb_grpc = load()
    with serving_stack.client("beta") as c:
        # INVALID_ARGUMENT
        assert _code(lambda: c.complete(prefix="  ", max_tokens=4)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x", max_tokens=0)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x", max_tokens=-3)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x", max_tokens=100000)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x", language="klingon", max_tokens=4)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x\x00y", max_tokens=4)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x" * 300_000, max_tokens=4)) == "INVALID_ARGUMENT"
        assert _code(lambda: c.complete(prefix="x", stop=["a"] * 20, max_tokens=4)) == "INVALID_ARGUMENT"
        # one line longer than the whole context after trimming
        assert _code(lambda: c.complete(prefix="y = " + "word " * 5000, max_tokens=4)) == "INVALID_ARGUMENT"
        # invalid UTF-8 in a string field (raw bytes; the client library would refuse to send it)
        raw = c.channel.unary_unary("/codetailor.v1.CompletionService/Complete",
                                    request_serializer=lambda b: b, response_deserializer=lambda b: b)
        bad = b"\x0a\x03\xff\xfe\x41" + b"\x28\x04"  # prefix = ff fe 41, max_tokens = 4
        with pytest.raises(grpc.RpcError) as e:
            raw(bad, metadata=c.metadata, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # NOT_FOUND: an unknown completion id
        assert _code(lambda: c.report_outcome("cmp-nope", "accepted")) == "NOT_FOUND"
        # PERMISSION_DENIED: a developer key on the admin service
        with pytest.raises(grpc.RpcError) as e:
            c.admin.ListAdapters(apb.TenantRequest(), metadata=c.metadata, timeout=10)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for msg in (e.value.details(),):
            assert "Traceback" not in msg and "/" not in msg
    # UNAUTHENTICATED: missing, malformed, unknown, revoked
    from serving.client import CompletionClient

    for key in (None, "not-a-key", "ct_000000000000_" + "a" * 40):
        with CompletionClient("127.0.0.1", serving_stack.port, key) as c:
            assert _code(lambda: c.complete(**FIELDS)) == "UNAUTHENTICATED"
    registry = Registry(Home(serving_stack.home), "test-pepper")
    key = registry.create_key("beta", "developer")
    registry.revoke_key(key.split("_")[1])
    with CompletionClient("127.0.0.1", serving_stack.port, key) as c:
        assert _code(lambda: c.complete(**FIELDS)) == "UNAUTHENTICATED"


def test_tenant_concurrency_limit_is_resource_exhausted(serving_stack):
    def ask(_):
        with serving_stack.client("gamma") as c:
            try:
                return c.complete(prefix=PREFIX, path="m.py", max_tokens=48)["id"]
            except ClientError as e:
                return e.code

    with cf.ThreadPoolExecutor(5) as pool:
        out = list(pool.map(ask, range(5)))
    assert "RESOURCE_EXHAUSTED" in out, out
    assert any(o.startswith("cmp-") for o in out), out
    # another tenant is not starved meanwhile, and the limit frees up afterwards
    with serving_stack.client("gamma") as c:
        assert c.complete(**FIELDS)["text"]


def _engine_running(stack) -> int:
    async def health():
        return await stack.stack.model.health.remote()
    return stack.call(health())["running"]


def test_deadline_cancels_generation(serving_stack):
    with serving_stack.client("gamma") as c:
        t0 = time.perf_counter()
        assert _code(lambda: c.complete(prefix=PREFIX, path="m.py", max_tokens=256, timeout=0.8)) == "DEADLINE_EXCEEDED"
        assert time.perf_counter() - t0 < 5
        assert _code(lambda: list(c.stream(prefix=PREFIX, path="m.py", max_tokens=256, timeout=0.8))) \
            == "DEADLINE_EXCEEDED"
    deadline = time.time() + 15
    while _engine_running(serving_stack) and time.time() < deadline:
        time.sleep(0.3)
    assert _engine_running(serving_stack) == 0, "the generation was not aborted"


def test_activation_switch_under_traffic(serving_stack):
    from serving.stubs import load

    _, _, apb, _ = load()
    old, new = serving_stack.versions["alpha"]
    seen, errors = [], []

    def traffic(stop_at):
        with serving_stack.client("alpha") as c:
            while time.time() < stop_at:
                try:
                    seen.append((time.time(), c.complete(prefix=PREFIX, path="m.py", max_tokens=2)["adapter_version"]))
                except ClientError as e:
                    errors.append(e.code)

    stop_at = time.time() + 12
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(traffic, stop_at)
        time.sleep(3)
        with serving_stack.client("alpha", "admin") as admin:
            st = admin.admin.ActivateAdapter(apb.ActivateAdapterRequest(version=new), metadata=admin.metadata, timeout=30)
            switched_at = time.time()
            assert st.active_version == new
            fut.result()
            rows = admin.admin.ListAdapters(apb.TenantRequest(), metadata=admin.metadata, timeout=30)
            assert [a.version for a in rows.adapters if a.active] == [new]
            admin.admin.RollbackAdapter(apb.TenantRequest(), metadata=admin.metadata, timeout=30)
    assert not errors, errors
    assert {v for t, v in seen if t < switched_at - 0.5} == {old}
    assert {v for t, v in seen if t > switched_at + 0.5} == {new}


def test_outcomes_are_stored_per_tenant(serving_stack):
    from serving.stubs import load

    _, _, apb, _ = load()
    with serving_stack.client("beta") as c:
        r = c.complete(**FIELDS)
    with serving_stack.client("gamma") as other:
        assert _code(lambda: other.report_outcome(r["id"], "accepted")) == "NOT_FOUND"  # not its id
    with serving_stack.client("beta", "admin") as c:
        assert c.report_outcome(r["id"], "edited", kept_chars=min(3, len(r["text"]))) is False
        assert c.report_outcome(r["id"], "accepted") is True  # the first report counts
        u = c.admin.GetUsage(apb.TenantRequest(), metadata=c.metadata, timeout=10)
    assert u.edited == 1 and u.accepted == 0 and u.acceptance_rate == 1.0


def test_health_reflection_and_metrics(serving_stack):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{serving_stack.port}") as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="codetailor.v1.CompletionService"))
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        resp = next(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
    assert {"codetailor.v1.CompletionService", "codetailor.v1.AdminService", "grpc.health.v1.Health"} <= names
    text, deadline = "", time.time() + 30
    while "ray_codetailor_requests_total" not in text and time.time() < deadline:
        time.sleep(2)
        text = urllib.request.urlopen(f"http://127.0.0.1:{serving_stack.metrics_port}/metrics", timeout=5).read().decode()
    assert "ray_codetailor_requests_total" in text
    assert "ray_codetailor_request_latency_ms_bucket" in text


def test_two_replicas_share_the_tenant_limit_and_completion_ids(serving_stack):
    """Two front servers in two Ray processes (as two Ingress replicas): the tenant's limit holds
    across both, and a completion issued by one is reported on the other."""
    import ray

    from serving.client import CompletionClient
    from tests.serving.replica_front import FrontReplica

    limit = serving_stack.settings.serving.tenant_concurrency
    replicas = [ray.remote(num_cpus=0)(FrontReplica).remote() for _ in range(2)]
    ports = ray.get([r.start.remote(serving_stack.settings, 3.0) for r in replicas], timeout=120)
    key = serving_stack.keys["gamma:developer"]
    fields = dict(prefix="def f():\n    return", path="m.py", max_tokens=4)
    try:
        with CompletionClient("127.0.0.1", ports[0], key) as a, CompletionClient("127.0.0.1", ports[1], key) as b:
            with cf.ThreadPoolExecutor(limit) as pool:
                busy = [pool.submit(a.complete, **fields) for _ in range(limit)]
                time.sleep(1.5)
                with pytest.raises(ClientError) as e:
                    b.complete(**fields)  # replica B sees the tenant's requests in flight on A
                assert e.value.code == "RESOURCE_EXHAUSTED"
                done = [f.result(60) for f in busy]
            assert b.report_outcome(done[0]["id"], "accepted") is False  # issued by A, reported on B
            assert a.report_outcome(done[0]["id"], "accepted") is True   # a duplicate
            other = serving_stack.keys["beta:developer"]
            with CompletionClient("127.0.0.1", ports[1], other) as c:
                with pytest.raises(ClientError) as e:
                    c.report_outcome(done[1]["id"], "accepted")  # another tenant's id looks unknown
                assert e.value.code == "NOT_FOUND"
    finally:
        ray.get([r.stop.remote() for r in replicas], timeout=30)
        for r in replicas:
            ray.kill(r)
