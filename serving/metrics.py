"""The serving metrics, with the base names deploy/metrics.txt lists (and ops' rules use).

All are `ray.util.metrics` series, so every process of the app (front server,
ingress and model replicas) exports them on Ray's one metrics-export port,
prefixed `ray_` (the exact exported names are listed in docs/serving.md).
Labels are bounded: tenants (a known, small set), fixed enums otherwise.
Objects are made on first use in each process (after Ray is up there).
"""

from __future__ import annotations

import threading
from functools import lru_cache

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
STAGES = ("auth", "retrieval", "queue", "generation", "total")
_lock = threading.Lock()


def _counter_class():
    from ray.util.metrics import Counter

    class _Counter(Counter):
        """A Counter for which adding 0 is a no-op. Ray's raises on inc(0), and a count of
        zero (no snippets, an empty completion) is normal traffic, not an error."""

        def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
            if value > 0:
                super().inc(value, tags=tags)

    return _Counter


class Metrics:
    def __init__(self) -> None:
        from ray.util.metrics import Gauge, Histogram

        C, G = _counter_class(), Gauge
        self.requests = C("codetailor_requests_total", "gRPC requests by tenant, method and status code",
                          tag_keys=("tenant", "method", "code"))
        self.latency = Histogram("codetailor_request_latency_ms", "request latency per stage (ms)",
                                 boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("stage",))
        self.tokens = C("codetailor_tokens_total", "prompt (in) and generated (out) tokens", tag_keys=("direction",))
        self.queue_depth = G("codetailor_queue_depth", "requests waiting in the engine's queue")
        self.engine_running = G("codetailor_engine_running_requests", "requests the engine is working on")
        self.adapters_loaded = G("codetailor_adapters_loaded", "adapters loaded in a model replica")
        self.adapter_loads = C("codetailor_adapter_loads_total", "adapters loaded into a model replica")
        self.adapter_evictions = C("codetailor_adapter_evictions_total", "adapters evicted from a model replica")
        self.adapter_load_failures = C("codetailor_adapter_load_failures_total",
                                       "adapter loads that failed (the base model answered instead)",
                                       tag_keys=("tenant",))
        self.retrieval_hits = C("codetailor_retrieval_hits_total", "snippets placed in prompts", tag_keys=("mode",))
        self.retrieval_degraded = C("codetailor_retrieval_degraded_total",
                                    "requests whose retrieval degraded or failed", tag_keys=("reason",))
        self.retrieval_up = G("codetailor_retrieval_backend_up", "1 when the last retrieval call succeeded")
        self.outcomes = C("codetailor_outcomes_total", "reported completion outcomes",
                          tag_keys=("tenant", "outcome"))
        self.accepted_chars = C("codetailor_accepted_chars_total", "characters kept by developers",
                                tag_keys=("tenant",))
        self.active_version = G("codetailor_tenant_active_adapter_version",
                                "number of the tenant's active adapter version (0: none)", tag_keys=("tenant",))
        self.system = G("codetailor_tenant_system", "1 for the system serving the tenant, 0 for the others",
                        tag_keys=("tenant", "system"))
        self.cqi = G("codetailor_tenant_cqi", "CQI of the tenant's active adapter (0: none)", tag_keys=("tenant",))
        self.replicas_healthy = G("codetailor_model_replicas_healthy", "model replicas whose engine is healthy")

    def observe_latency(self, stage: str, ms: float) -> None:
        self.latency.observe(max(0.0, ms), tags={"stage": stage})


@lru_cache(maxsize=1)
def _make() -> Metrics:
    return Metrics()


def metrics() -> Metrics:
    with _lock:
        return _make()
