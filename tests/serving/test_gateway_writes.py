"""A gateway (a front server beside the cluster, `serve --attach`) mounts the home read-only: every
change it makes to a tenant's files (outcomes, activation, rollback) is done by the Ingress deployment,
which it reaches through its handle."""

from __future__ import annotations

import pytest

from serving import admin as admin_ops
from serving.client import CompletionClient
from serving.front import HandleIngress
from tests.serving.test_front_calls import FIELDS, SUMMARY, served  # noqa: F401 (fixture)

RUN_IN_INGRESS = admin_ops.tenant_write  # what the Ingress replica runs


class _Done:
    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # a generator, as __await__ must be


class FakeIngressHandle:
    """Stands for the Ingress deployment's handle: answers completions at once and runs tenant
    writes as the Ingress replica does, recording them."""

    def __init__(self, settings):
        self.writes = []
        outer = self

        class Complete:
            def remote(self, req):
                return _Done(dict(SUMMARY))

        class TenantWrite:
            def remote(self, op, tenant, args):
                outer.writes.append((op, tenant))
                return _Done(RUN_IN_INGRESS(settings, op, tenant, args))
        self.complete, self.tenant_write = Complete(), TenantWrite()


def test_a_gateway_changes_tenant_files_only_through_the_ingress(served, tmp_path, monkeypatch):
    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry
    from serving.outcomes import OutcomeStore

    start, key = served
    handle = FakeIngressHandle(load_settings(home=tmp_path, key_pepper="p"))
    admin_key = Registry(Home(tmp_path), "p").create_key("acme", "admin")

    def no_local_write(*a, **kw):
        raise AssertionError("the gateway wrote the home itself")
    monkeypatch.setattr(admin_ops, "tenant_write", no_local_write)
    port = start(HandleIngress(handle))
    with CompletionClient("127.0.0.1", port, key) as c:
        cid = c.complete(**FIELDS)["id"]
        assert c.report_outcome(cid, "accepted") is False
    import grpc

    from serving.stubs import load

    apb, apb_grpc = load()[2], load()[3]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = apb_grpc.AdminServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:  # no such version: the Ingress side says so
            stub.ActivateAdapter(apb.ActivateAdapterRequest(version="v0042"),
                                 metadata=(("authorization", f"Bearer {admin_key}"),))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert handle.writes == [("record_outcome", "acme"), ("activate", "acme")]
    assert OutcomeStore(Home(tmp_path).tenant("acme")).summary()["accepted"] == 1
