"""The model deployment: one engine per replica, many tenants' adapters.

Requests arrive with Serve's multiplexed model id set to the tenant's adapter
(`tenant/version/uid`, see `adapter_model_id`), so Serve routes a tenant to a
replica that already holds its adapter. The multiplexed loader loads the
adapter into the engine; Serve's LRU evicts (and we remove it from the engine).
A corrupt or missing adapter is answered by the base model, with
codetailor_adapter_load_failures_total{tenant} counting it (retried after
`_RETRY_FAILED_S`, so a fixed file takes over without a restart).

The deadline travels with the request and is enforced here too, so a generation
is aborted (its KV cache freed) even if the caller's cancellation is lost.
This module imports neither vLLM nor retrieval at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import AsyncIterator

from codetailor.config import Settings
from codetailor.errors import client_text, outcome
from engine.protocol import AdapterLoadError, AdapterRef, EngineError, GenerationRequest
from serving._loopback import pin_replica_grpc_to_loopback
from serving.status import ServingError

pin_replica_grpc_to_loopback()  # before Serve starts this replica's gRPC server

log = logging.getLogger("codetailor.serving.model")
_RETRY_FAILED_S = 30.0
_HEALTH_EVERY_S = 2.0


def adapter_model_id(ref: AdapterRef | None) -> str:
    return "" if ref is None else f"{ref.tenant}/{ref.version}/{ref.uid}"


def ref_from_model_id(model_id: str) -> AdapterRef | None:
    if not model_id:
        return None
    from codetailor.names import TenantId

    tenant, version, uid = model_id.split("/", 2)
    return AdapterRef(TenantId(tenant), version, uid)


class _Loaded:
    """What the multiplexed loader caches per adapter. Serve calls __del__ on eviction."""

    def __init__(self, server: "ModelServer", ref: AdapterRef, ok: bool):
        self.server, self.ref, self.ok = server, ref, ok
        self.failed_at = 0.0 if ok else time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._gone = False

    def __del__(self):  # Serve runs a sync __del__ in a thread on eviction
        if self._gone or not self.ok:
            return
        self._gone = True
        try:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.server._evict(self.ref)))
        except RuntimeError:  # loop closed: the replica is going away anyway
            pass


def _error(code: str, message: str) -> dict:
    return ServingError(code, message).as_dict()


class ModelServer:
    def __init__(self, settings: Settings, model_path: str):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from ray import serve

        from engine.vllm_engine import VllmEngine
        from serving.metrics import metrics

        self.settings = settings
        self.engine = VllmEngine.start(settings, model_path)
        self.metrics = metrics()
        self._loaded: dict[str, AdapterRef] = {}

        async def load(model_id: str) -> _Loaded:  # a plain function: Serve keeps state on it
            return await self._load(model_id)

        self._adapter = serve.multiplexed(max_num_models_per_replica=settings.engine.max_cpu_loras)(load)
        self._health_task = asyncio.get_event_loop().create_task(self._health_loop())

    # -- adapters --------------------------------------------------------------------
    async def _load(self, model_id: str) -> _Loaded:
        ref = ref_from_model_id(model_id)
        try:
            await self.engine.add_adapter(ref)
        except AdapterLoadError as e:
            log.warning("adapter %s failed to load, serving the base model: %s", model_id, e)
            self.metrics.adapter_load_failures.inc(tags={"tenant": str(ref.tenant)})
            return _Loaded(self, ref, ok=False)
        self._loaded[model_id] = ref
        self.metrics.adapter_loads.inc()
        return _Loaded(self, ref, ok=True)

    async def _evict(self, ref: AdapterRef) -> None:
        self._loaded.pop(adapter_model_id(ref), None)
        try:
            await self.engine.remove_adapter(ref)
            self.metrics.adapter_evictions.inc()
        except EngineError as e:
            log.warning("could not evict adapter %s: %s", adapter_model_id(ref), e)

    async def _adapter_for(self, model_id: str) -> AdapterRef | None:
        if not model_id:
            return None
        loaded = await self._adapter(model_id)
        if not loaded.ok and time.monotonic() - loaded.failed_at > _RETRY_FAILED_S:
            try:  # the file may have been fixed
                await self.engine.add_adapter(loaded.ref)
                loaded.ok = True
                self._loaded[model_id] = loaded.ref
            except AdapterLoadError:
                loaded.failed_at = time.monotonic()
                self.metrics.adapter_load_failures.inc(tags={"tenant": str(loaded.ref.tenant)})
        return loaded.ref if loaded.ok else None

    async def drop_stale(self) -> list[str]:
        """Remove adapters whose tenant was deleted or whose version was replaced."""
        from codetailor.home import Home
        from engine.resolver import AdapterResolver

        resolver = AdapterResolver(Home(self.settings.home))
        dropped = []
        for model_id, ref in list(self._loaded.items()):
            try:
                resolver.adapter_dir(ref)
            except AdapterLoadError:
                await self._evict(ref)
                dropped.append(model_id)
        return dropped

    # -- generation --------------------------------------------------------------------
    async def _request(self, req: dict) -> tuple[GenerationRequest, bool]:
        from ray import serve

        model_id = req.get("adapter_id") or ""
        if model_id and serve.get_multiplexed_model_id() not in ("", model_id):
            log.error("request %s: multiplexed id mismatch", req["request_id"])
        ref = await self._adapter_for(model_id)
        fallback = bool(model_id) and ref is None
        gen = GenerationRequest(prompt=req["prompt"], max_tokens=req["max_tokens"],
                                temperature=req["temperature"], stop=tuple(req["stop"]), adapter=ref,
                                request_id=req["request_id"], seed=req.get("seed"), heal=req.get("heal", ""),
                                cache_salt=req.get("cache_salt"),
                                stop_token_ids=tuple(req.get("stop_token_ids", ())))
        return gen, fallback

    @staticmethod
    def _remaining(req: dict) -> float | None:
        d = req.get("deadline")
        return None if d is None else d - time.time()

    def _result(self, req: dict, r, fallback: bool, text: str) -> dict:
        return {"text": text, "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens, "queue_ms": r.queue_ms,
                "generation_ms": r.generation_ms, "adapter_version": r.adapter.version if r.adapter else "",
                "adapter_tenant": str(r.adapter.tenant) if r.adapter else "", "adapter_fallback": fallback}

    def _engine_error(self, req: dict, e: EngineError) -> dict:
        log.warning("request %s: engine error %s: %s", req["request_id"], type(e).__name__, e)
        return _error(outcome(e).status, client_text(e))

    async def generate(self, req: dict) -> dict:
        remaining = self._remaining(req)
        if remaining is not None and remaining <= 0:
            return _error("DEADLINE_EXCEEDED", "the deadline passed before generation started")
        try:
            gen, fallback = await self._request(req)
            async with asyncio.timeout(remaining):
                r = await self.engine.generate(gen)  # cancelled -> the engine aborts the request
        except TimeoutError:
            return _error("DEADLINE_EXCEEDED", "the deadline passed during generation; it was cancelled")
        except EngineError as e:
            return self._engine_error(req, e)
        return self._result(req, r, fallback, r.text)

    async def stream(self, req: dict) -> AsyncIterator[dict]:
        """Yields {"text": new text} items, then one {"final": {...}} (or an error item)."""
        remaining = self._remaining(req)
        if remaining is not None and remaining <= 0:
            yield _error("DEADLINE_EXCEEDED", "the deadline passed before generation started")
            return
        last = None
        deadline = req.get("deadline")
        try:
            gen, fallback = await self._request(req)
            agen = self.engine.stream(gen)
            try:
                while True:
                    # Per item, not around the yields: a timeout must cancel the engine's
                    # await, not whatever Serve is doing with the item we yielded.
                    left = None if deadline is None else deadline - time.time()
                    try:
                        r = await asyncio.wait_for(agen.__anext__(), left)
                    except StopAsyncIteration:
                        break
                    last = r
                    if r.text:
                        yield {"text": r.text}
            finally:
                await agen.aclose()  # an early stop aborts the request in the engine
        except TimeoutError:
            yield _error("DEADLINE_EXCEEDED", "the deadline passed during generation; it was cancelled")
            return
        except EngineError as e:
            yield self._engine_error(req, e)
            return
        if last is None:
            yield _error("UNAVAILABLE", "the engine returned no output")
            return
        yield {"final": self._result(req, last, fallback, "")}

    # -- health ----------------------------------------------------------------------------
    async def health(self) -> dict:
        h = await self.engine.health()
        return {"ok": h.ok, "running": h.running_requests, "waiting": h.waiting_requests,
                "adapters": h.loaded_adapters, "detail": h.detail}

    async def check_health(self) -> None:
        """Serve's replica health check: a dead engine makes Serve replace the replica."""
        h = await self.engine.health()
        if not h.ok:
            raise RuntimeError(f"engine unhealthy: {h.detail}")

    async def _health_loop(self) -> None:
        while True:
            try:
                h = await self.engine.health()
                self.metrics.engine_running.set(h.running_requests)
                self.metrics.queue_depth.set(h.waiting_requests)
                self.metrics.adapters_loaded.set(h.loaded_adapters)
                self.metrics.replicas_healthy.set(1 if h.ok else 0)
            except Exception:  # never let the sampler kill the replica
                log.exception("health sampling failed")
            await asyncio.sleep(_HEALTH_EVERY_S)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)
