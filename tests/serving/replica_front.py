"""A front server in a Ray actor of its own, as each Ingress replica runs one: for the test that
several replicas share the per-tenant state (tests/serving/test_integration.py)."""

from __future__ import annotations


class FrontReplica:
    async def start(self, settings, delay_s: float) -> int:
        from serving.front import FrontServer, LocalIngress
        from serving.tenant_state import SharedTenantState
        from tests.serving.test_front_calls import SlowIngress

        self.front = FrontServer(settings, LocalIngress(SlowIngress(delay_s)),
                                 tenant_state=SharedTenantState.connect())
        return await self.front.start(port=0)

    async def stop(self) -> None:
        await self.front.stop(0.1)
