"""Per-tenant state shared by front servers (serving/tenant_state.py), without Ray: the ledger,
two front servers over one state, and how the shared state fails (limit open, ReportOutcome closed).
The same across Ray replicas: tests/serving/test_integration.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.client import ClientError, CompletionClient
from serving.status import ServingError
from serving.tenant_state import Ledger, LocalTenantState, SharedTenantState, TenantStateActor
from tests.serving.test_front_calls import FIELDS, SlowIngress, served  # noqa: F401 (fixture)
from serving.front import LocalIngress


def test_ledger_limits_per_tenant_and_leases_expire():
    led = Ledger()
    a1, a2 = led.acquire("a", 2, 60), led.acquire("a", 2, 60)
    assert a1 and a2 and led.acquire("a", 2, 60) is None
    assert led.acquire("b", 2, 60)                     # another tenant is not affected
    led.release(a1)
    led.release(a1)                                    # twice is harmless
    assert led.acquire("a", 2, 60)
    short = Ledger()
    s = short.acquire("a", 1, 1.0)
    short.slots[s] = ("a", time.time() - 1)             # its holder died: the lease ran out
    assert short.acquire("a", 1, 60) is not None


def test_ledger_completion_ids_are_per_tenant_and_claimed_once():
    led = Ledger(remembered=2)
    led.remember("c1", {"tenant": "a", "length": 5, "system": "base", "adapter_version": ""})
    assert led.lookup("c1", "b") is None               # another tenant's id looks unknown
    assert led.lookup("c1", "a")["length"] == 5
    assert led.claim("c1") is True and led.claim("c1") is False
    led.remember("c2", {"tenant": "a", "length": 1, "system": "base", "adapter_version": ""})
    led.remember("c3", {"tenant": "a", "length": 1, "system": "base", "adapter_version": ""})
    assert led.lookup("c1", "a") is None               # the oldest is forgotten beyond `remembered`


class _Ref:
    """Like a Ray ObjectRef: the call is submitted at once, awaiting it gives the result."""

    def __init__(self, fn, args, fail):
        self.fail = fail
        self.result = None if fail else fn(*args)

    def __await__(self):
        if self.fail:
            raise ConnectionError("actor died")
        return self.result
        yield  # a generator, as __await__ must be


class _Remote:
    def __init__(self, fn, fail):
        self.fn, self.fail = fn, fail

    def remote(self, *args):
        return _Ref(self.fn, args, self.fail)


class FakeActor:
    """Stands for the Ray actor handle: the real TenantStateActor behind `.remote`, or an outage."""

    def __init__(self):
        self.impl, self.down = TenantStateActor(), False

    def __getattr__(self, name):
        return _Remote(getattr(self.impl, name), self.down)


def test_an_outage_fails_the_limit_open_and_report_outcome_closed():
    actor = FakeActor()
    state = SharedTenantState(actor, timeout_s=1.0)

    async def scenario():
        slot = await state.acquire("a", 1, 60)
        assert slot and await state.acquire("a", 1, 60) is None  # the shared limit holds
        await state.remember("c1", {"tenant": "a", "length": 3, "system": "base", "adapter_version": ""})
        assert (await state.lookup("c1", "a"))["length"] == 3
        state.release(slot)
        actor.down = True
        local = await state.acquire("a", 1, 60)                 # open: this replica's own limit
        assert local and await state.acquire("a", 1, 60) is None
        state.release(local)
        assert await state.acquire("a", 1, 60)
        with pytest.raises(ServingError) as e:                  # closed: nothing unchecked is accepted
            await state.lookup("c1", "a")
        assert e.value.code == "UNAVAILABLE"
        with pytest.raises(ServingError):
            await state.claim("c1")
        await state.remember("c2", {"tenant": "a", "length": 1, "system": "base", "adapter_version": ""})  # no raise
    asyncio.run(scenario())


class _SlowAcquire:
    """The actor takes a slot at once but answers `acquire` only after the caller's timeout."""

    def __init__(self, impl):
        self.impl = impl

    def __getattr__(self, name):
        fn = getattr(self.impl, name)

        class _M:
            def remote(self, *args):
                result = fn(*args)
                if name != "acquire":
                    return None   # release: nothing awaits it

                async def late():
                    await asyncio.sleep(5)
                    return result
                return late()
        return _M()


def test_a_timed_out_acquire_gives_its_slot_back():
    impl = TenantStateActor()
    state = SharedTenantState(_SlowAcquire(impl), timeout_s=0.05)

    async def scenario():
        for _ in range(5):   # each call times out; without the give-back the tenant would be locked out
            slot = await state.acquire("a", 2, 600)
            assert slot and slot.startswith("local:")
            state.release(slot)
    asyncio.run(scenario())
    assert impl.ledger.in_flight["a"] == 0 and not impl.ledger.slots


def test_two_front_servers_share_the_limit_and_completion_ids(served):
    """What N Ingress replicas see through the cluster's actor, here with one state object."""
    start, key = served
    shared = LocalTenantState()
    from serving import front as front_mod

    real = front_mod.FrontServer.__init__

    def with_shared(self, *a, **kw):
        real(self, *a, tenant_state=shared, **kw)
    front_mod.FrontServer.__init__ = with_shared
    try:
        slow_a, slow_b = SlowIngress(3.0), SlowIngress(0.0)
        port_a, port_b = start(LocalIngress(slow_a)), start(LocalIngress(slow_b))
    finally:
        front_mod.FrontServer.__init__ = real
    import concurrent.futures as cf

    with CompletionClient("127.0.0.1", port_a, key) as a, CompletionClient("127.0.0.1", port_b, key) as b:
        with cf.ThreadPoolExecutor(8) as pool:  # the fixture's limit is 8: fill it on A
            busy = [pool.submit(a.complete, **FIELDS) for _ in range(8)]
            time.sleep(1.0)
            with pytest.raises(ClientError) as e:
                b.complete(**FIELDS)            # B sees A's requests in flight
            assert e.value.code == "RESOURCE_EXHAUSTED"
            done = [f.result(30) for f in busy]
        cid = done[0]["id"]
        assert b.report_outcome(cid, "accepted") is False     # issued by A, reported on B
        assert a.report_outcome(cid, "accepted") is True      # a duplicate, wherever it lands
        r = b.complete(**FIELDS)                              # the slots came back
        assert r["text"]
