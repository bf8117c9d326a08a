"""Per-tenant state that every front server of a deployment shares.

Two things a front server decides per tenant must hold across all of them, or N
Ingress replicas (or gateway sidecars) give a tenant N times its limit and a
ReportOutcome that lands on another replica than its completion fails:
- requests in flight, against `serving.tenant_concurrency` (admin calls count too);
- the completion ids issued, with their tenant (ReportOutcome checks and claims them).

`Ledger` is that state. `LocalTenantState` keeps it in this process (a single
front server, tests); `SharedTenantState` keeps it in one named Ray actor that
every replica of the cluster reaches.

A slot is a lease: it expires after the request's deadline (or `MAX_HOLD_S`), so
a front server that dies holding slots cannot lock its tenants out.

When the shared actor cannot be reached (restarting, overloaded), the two halves
fail differently, on purpose:
- the in-flight limit fails OPEN to this replica's own ledger: it is a fairness
  control, not an access control, and refusing every completion because a
  bookkeeping actor restarts would turn a blip into an outage. The bound then is
  what one replica allows (N replicas: N times the limit) until the actor is back;
- ReportOutcome fails CLOSED (UNAVAILABLE, retry): accepting an id that cannot be
  checked would let a tenant record outcomes for completions it never received.
A restarted actor starts empty: slots held before are forgotten (fail open again)
and earlier completion ids answer NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid

from serving.status import ServingError

log = logging.getLogger("codetailor.serving.tenant_state")
ACTOR_NAME = "codetailor-tenant-state"
ACTOR_NAMESPACE = "codetailor"
MAX_HOLD_S = 600.0      # a slot without a deadline is released after this at the latest
REMEMBERED = 100_000    # completion ids kept for ReportOutcome (oldest forgotten first)
CALL_TIMEOUT_S = 2.0    # a shared-state call slower than this counts as an outage
_LOCAL = "local:"


class Ledger:
    """Slots in flight per tenant and the completion ids issued. Plain data, no I/O."""

    def __init__(self, remembered: int = REMEMBERED):
        self.remembered = remembered
        self.slots: dict[str, tuple[str, float]] = {}          # slot -> (tenant, expires at)
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.issued: collections.OrderedDict[str, dict] = collections.OrderedDict()

    def acquire(self, tenant: str, limit: int, hold_s: float, prefix: str = "", slot: str | None = None) -> str | None:
        """A slot for `tenant` (named `slot` when the caller chose its name), or None when it
        already has `limit` in flight."""
        self._expire(time.time())
        if self.in_flight[tenant] >= limit:
            return None
        slot = slot or prefix + uuid.uuid4().hex
        self.slots[slot] = (tenant, time.time() + min(max(hold_s, 1.0), MAX_HOLD_S))
        self.in_flight[tenant] += 1
        return slot

    def release(self, slot: str) -> None:
        held = self.slots.pop(slot, None)
        if held is not None:
            self.in_flight[held[0]] -= 1
            if self.in_flight[held[0]] <= 0:
                del self.in_flight[held[0]]

    def _expire(self, now: float) -> None:
        for slot in [s for s, (_, until) in self.slots.items() if until < now]:
            self.release(slot)

    def remember(self, cid: str, record: dict) -> None:
        self.issued[cid] = dict(record, reported=False)
        while len(self.issued) > self.remembered:
            self.issued.popitem(last=False)

    def lookup(self, cid: str, tenant: str) -> dict | None:
        """The completion's record, if `tenant` received it (another tenant's id looks unknown)."""
        rec = self.issued.get(cid)
        return dict(rec) if rec is not None and rec["tenant"] == tenant else None

    def claim(self, cid: str) -> bool:
        """Mark the completion reported; False if it already was (a duplicate report)."""
        rec = self.issued.get(cid)
        if rec is None or rec["reported"]:
            return False
        rec["reported"] = True
        return True


class LocalTenantState:
    """The ledger in this process: exact for one front server."""

    def __init__(self):
        self.ledger = Ledger()

    async def acquire(self, tenant: str, limit: int, hold_s: float) -> str | None:
        return self.ledger.acquire(tenant, limit, hold_s)

    def release(self, slot: str) -> None:
        self.ledger.release(slot)

    async def remember(self, cid: str, record: dict) -> None:
        self.ledger.remember(cid, record)

    async def lookup(self, cid: str, tenant: str) -> dict | None:
        return self.ledger.lookup(cid, tenant)

    async def claim(self, cid: str) -> bool:
        return self.ledger.claim(cid)


class TenantStateActor:
    """The Ray actor holding the cluster's one ledger (see `SharedTenantState.connect`)."""

    def __init__(self):
        self.ledger = Ledger()

    def acquire(self, tenant: str, limit: int, hold_s: float, slot: str | None = None) -> str | None:
        return self.ledger.acquire(tenant, limit, hold_s, slot=slot)

    def release(self, slot: str) -> None:
        self.ledger.release(slot)

    def remember(self, cid: str, record: dict) -> None:
        self.ledger.remember(cid, record)

    def lookup(self, cid: str, tenant: str) -> dict | None:
        return self.ledger.lookup(cid, tenant)

    def claim(self, cid: str) -> bool:
        return self.ledger.claim(cid)


class SharedTenantState:
    """The cluster's ledger through a Ray actor handle, failing as the module docstring says."""

    def __init__(self, actor, timeout_s: float = CALL_TIMEOUT_S):
        self.actor = actor
        self.timeout_s = timeout_s
        self.fallback = Ledger()  # this replica's own, while the shared one is out of reach

    @classmethod
    def connect(cls) -> "SharedTenantState":
        """The cluster's actor, created by whichever replica comes first (needs ray.init)."""
        import ray

        actor = ray.remote(TenantStateActor).options(
            name=ACTOR_NAME, namespace=ACTOR_NAMESPACE, get_if_exists=True, lifetime="detached",
            num_cpus=0, max_restarts=-1).remote()
        return cls(actor)

    async def _call(self, method: str, *args):
        return await asyncio.wait_for(getattr(self.actor, method).remote(*args), self.timeout_s)

    async def acquire(self, tenant: str, limit: int, hold_s: float) -> str | None:
        # The slot is named here, so a call that times out can be undone: the actor may still take
        # the slot after we stopped waiting, and the release below runs after it (one caller's
        # calls to an actor run in order). Without it each slow call leaks a slot until its lease
        # ends, and a loaded cluster locks tenants out.
        slot = uuid.uuid4().hex
        try:
            return await self._call("acquire", tenant, limit, hold_s, slot)
        except Exception as e:  # fail open to this replica's limit (see the module docstring)
            self.release(slot)
            log.warning("shared tenant state unreachable (%s: %s): applying this replica's limit",
                        type(e).__name__, e)
            return self.fallback.acquire(tenant, limit, hold_s, prefix=_LOCAL)

    def release(self, slot: str) -> None:
        if slot.startswith(_LOCAL):
            self.fallback.release(slot)
            return
        try:  # not awaited: nothing waits for a release; a lost one expires with its lease
            self.actor.release.remote(slot)
        except Exception as e:
            log.warning("could not release a tenant slot: %s: %s", type(e).__name__, e)

    async def remember(self, cid: str, record: dict) -> None:
        try:
            await self._call("remember", cid, record)
        except Exception as e:  # the completion is served; only a later ReportOutcome will miss it
            log.warning("could not remember completion %s: %s: %s", cid, type(e).__name__, e)

    async def lookup(self, cid: str, tenant: str) -> dict | None:
        return await self._closed("lookup", cid, tenant)

    async def claim(self, cid: str) -> bool:
        return await self._closed("claim", cid)

    async def _closed(self, method: str, *args):
        try:
            return await self._call(method, *args)
        except Exception as e:  # fail closed: an id that cannot be checked is not accepted
            log.warning("shared tenant state unreachable for %s: %s: %s", method, type(e).__name__, e)
            raise ServingError("UNAVAILABLE", "completion ids cannot be checked right now; retry shortly") from None
