"""Fast unit checks of the hardening in serving/ingress.py (no Ray, no engine)."""

from __future__ import annotations

import sys
import types

import pytest

from serving.ingress import Ingress, _Prepared
from serving.status import ServingError


class _Recorder:
    """Stands in for the Ray metrics (a unit test of the code around them)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        rec = self

        class _Series:
            def inc(self, value=1, tags=None):
                rec.calls.append((name, "inc", value, tags))

            def set(self, value, tags=None):
                rec.calls.append((name, "set", value, tags))
        return _Series()


def _prep(tenant="acme"):
    return _Prepared({"request_id": "r1", "adapter_id": f"{tenant}/v0001/u"}, "ft", [], 0.0, None, tenant)


def _result(adapter_tenant):
    return {"finish_reason": "length", "prompt_tokens": 3, "completion_tokens": 1, "adapter_version": "v0001",
            "adapter_tenant": adapter_tenant, "adapter_fallback": False, "generation_ms": 1.0}


def test_summary_fails_closed_on_another_tenants_adapter():
    ing = Ingress.__new__(Ingress)
    assert ing._summary(_prep(), _result("acme"), 2.0, "x")["adapter_version"] == "v0001"
    assert ing._summary(_prep(), _result(""), 2.0, "x")["system"] == "ft"   # base answered (fallback path)
    with pytest.raises(ServingError) as e:
        ing._summary(_prep(), _result("other"), 2.0, "x")
    assert e.value.code == "INTERNAL" and "other" not in e.value.message


def test_vector_store_down_is_counted_and_no_zero_increments(monkeypatch, tmp_path):
    from codetailor.config import load_settings

    ing = Ingress.__new__(Ingress)
    ing.settings = load_settings(home=tmp_path)
    ing.metrics = _Recorder()
    fake = types.ModuleType("retrieval.search")
    fake.degraded_searches = 0
    monkeypatch.setitem(sys.modules, "retrieval.search", fake)
    paths = types.SimpleNamespace(tenant="acme", index_dir=tmp_path)

    def degraded_search(p, q):
        fake.degraded_searches += 1   # what retrieval does when the vector store is down
        return []
    ing._retrieval = object()
    ing._search = degraded_search
    from codetailor.completion import Cursor

    assert ing._retrieve(paths, Cursor("def f():\n    return")) == ([], True)
    assert ("retrieval_degraded", "inc", 1, {"reason": "vector_store_down"}) in ing.metrics.calls
    assert ("retrieval_up", "set", 0, None) in ing.metrics.calls
    assert not any(c[1] == "inc" and c[2] == 0 for c in ing.metrics.calls)   # Ray refuses inc(0)


@pytest.mark.parametrize("salted", [True, False])
def test_each_tenants_requests_carry_its_own_cache_salt(tmp_path, salted):
    """The engine's prefix cache is shared by every tenant; the ingress salts each request with its
    tenant, so one tenant's prompt never reuses (and a timing probe never detects) another's."""
    import asyncio

    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry
    from serving.model import ModelServer

    ing = Ingress.__new__(Ingress)
    ing.settings = load_settings(home=tmp_path, key_pepper="p", retrieval={"top_k": 0},
                                 serving={"tenant_cache_salt": salted})
    ing.home = Home(tmp_path)
    ing.metrics = _Recorder()
    ing.count_tokens = lambda text: len(text.split())
    from codetailor.prompt_format import TEXT

    ing.template = TEXT
    reg = Registry(ing.home, "p")
    salts = {}
    for tenant in ("acme", "globex"):
        reg.create_tenant(tenant)
        req = {"request_id": "same", "prefix": "def shared_prefix():\n    return", "suffix": "", "path": "m.py",
               "max_tokens": 4, "temperature": 0.0, "stop": [], "tenant": tenant, "deadline": None}
        model_req = ing._prepare(req).model_req
        server = ModelServer.__new__(ModelServer)

        async def no_adapter(model_id):
            return None
        server._adapter_for = no_adapter
        gen, _ = asyncio.run(server._request(model_req))
        salts[tenant] = gen.cache_salt
    assert salts == ({"acme": "acme", "globex": "globex"} if salted else {"acme": None, "globex": None})
