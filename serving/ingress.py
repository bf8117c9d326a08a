"""The ingress deployment: per request, the tenant's system and adapter, its
retrieval (query = the lines above the cursor), the shared prompt format, then
the model deployment with the multiplexed id of the tenant's adapter.

Requests come from the front server already authenticated and validated (a
dict of `CompletionInput` fields plus `tenant` and `deadline`). With
`front_port` set (`codetailor serve`), each Ingress replica runs that gRPC front
server itself, on its own event loop, and calls this object directly: a client
request then crosses one Serve hop (Ingress -> Model) instead of two. Without it
(a RayService; `serve --attach`), a front server elsewhere calls the deployment
through a handle. The adapter
state is read per request (two small files), so an activation takes effect on
the next request without restarting anything. Retrieval (bm25s/numba) is
imported here only, in the ingress process, never in a model replica.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from codetailor import completion
from codetailor import prompt_format as pf
from codetailor.adapters import AdapterStore
from codetailor.config import Settings
from codetailor.errors import NotFound, PromptTooLong
from codetailor.home import Home, TenantPaths
from codetailor.model import base_mismatch, model_checksum, prompt_template
from codetailor.systems import System
from engine.protocol import AdapterLoadError, AdapterRef
from serving.model import adapter_model_id
from serving._loopback import pin_replica_grpc_to_loopback
from serving.status import ServingError, invalid

pin_replica_grpc_to_loopback()  # before Serve starts this replica's gRPC server

log = logging.getLogger("codetailor.serving.ingress")


@dataclass
class _Prepared:
    model_req: dict
    system: str
    snippets: list[dict]
    retrieval_ms: float
    prompt: completion.Prompt | None   # turns the engine's text into the insertion
    tenant: str
    definitions: tuple[int, int] = (0, 0)   # (kept, dropped for budget) of the symbol context


class Ingress:
    def __init__(self, settings: Settings, model_handle, model_path: str, *,
                 front_port: int | None = None, reuse_port: bool = False):
        from tokenizers import Tokenizer

        from engine.resolver import AdapterResolver
        from serving.metrics import metrics

        self.settings = settings
        self.home = Home(settings.home)
        self.model = model_handle
        self.resolver = AdapterResolver(self.home)
        # The engine's own tokenizer file: counts match the engine's count_tokens.
        self._tok = Tokenizer.from_file(f"{model_path}/tokenizer.json")
        self.template = prompt_template(settings, Path(model_path))
        self._base = (model_checksum(Path(model_path)), self.template.name)
        self._stale_logged: set[tuple[str, str]] = set()
        self.metrics = metrics()
        self._retrieval = None
        self._warm = threading.Event()
        if settings.retrieval.top_k <= 0:
            self._warm.set()
        else:
            # Load the embedding model now, off the request path: the first query would
            # otherwise wait ~4 s for it (measured by the demo).
            threading.Thread(target=self._warm_retrieval, name="warm-retrieval", daemon=True).start()
        self._front = None
        self._front_start: asyncio.Task | None = None
        if front_port is not None:
            from serving.front import FrontServer, LocalIngress
            from serving.tenant_state import SharedTenantState

            # Limits and completion ids hold across every replica's front server (and gateways).
            self._front = FrontServer(settings, LocalIngress(self), model_handle, reuse_port=reuse_port,
                                      tenant_state=SharedTenantState.connect())
            # On the loop this replica's requests run on (Serve runs __init__ there, as
            # serving.model's health task relies on too).
            self._front_start = asyncio.get_event_loop().create_task(self._front.start(port=front_port))

    async def listening_port(self) -> int:
        """The port this replica's front server listens on (raises if it could not bind)."""
        if self._front_start is None:
            raise RuntimeError("this Ingress runs no front server (front_port not set)")
        return await self._front_start

    async def stop_front(self, grace: float = 2.0) -> None:
        """Health NOT_SERVING, then stop accepting and let calls in flight finish (`grace` s)."""
        if self._front is not None and self._front_start is not None and self._front_start.done() \
                and not self._front_start.exception():
            await self._front.stop(grace)

    def _warm_retrieval(self) -> None:
        try:
            import retrieval.embed

            retrieval.embed.warm_up(self.settings)   # exports the int8 encoder here if this machine has none
        except Exception as e:  # a missing model shows on the first search, with its own message
            log.warning("could not preload the embedding model: %s: %s", type(e).__name__, e)
        finally:
            self._warm.set()

    async def warmed(self) -> bool:
        """Whether the start-up warm-up (the embedding model) is done; benchmarks wait for it,
        since it takes the CPU from the engine for a while."""
        return self._warm.is_set()

    def count_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    async def tenant_write(self, op: str, tenant: str, args: dict) -> dict:
        """A front server's change to a tenant's files (serving.admin.tenant_write), for a gateway
        whose home is mounted read-only."""
        from serving import admin as admin_ops

        return await asyncio.to_thread(admin_ops.tenant_write, self.settings, op, tenant, args)

    # -- per request ---------------------------------------------------------------------
    def _adapter(self, paths: TenantPaths) -> AdapterRef | None:
        try:
            ref = self.resolver.ref_for(paths.tenant)
            return None if ref is not None and self._for_another_base(paths, ref) else ref
        except (AdapterLoadError, NotFound, OSError, ValueError) as e:
            log.warning("tenant %s: active adapter unusable, serving without it: %s", paths.tenant, e)
            self.metrics.adapter_load_failures.inc(tags={"tenant": str(paths.tenant)})
            return None

    def _for_another_base(self, paths: TenantPaths, ref: AdapterRef) -> bool:
        """An active adapter trained on another base model or template (model.base or
        prompt.template changed since): base completions instead, said once in the log. Adapters
        that record no base model are served as before."""
        meta = AdapterStore(paths).meta(ref.version)
        if meta.base_model.checksum is None:
            return False
        why = base_mismatch(f"{paths.tenant}/{ref.version}", meta, *self._base)
        if why and (str(paths.tenant), ref.version) not in self._stale_logged:
            self._stale_logged.add((str(paths.tenant), ref.version))
            log.warning("serving base completions to tenant %s: %s", paths.tenant, why)
        return why is not None

    def _search(self, paths: TenantPaths, query: str) -> list:
        if self._retrieval is None:
            import retrieval  # here only: see the module docstring

            self._retrieval = retrieval
        return list(self._retrieval.search(self.settings, paths, query, top_k=self.settings.retrieval.top_k))

    def _degraded_count(self) -> int:
        """Retrieval's count of hybrid searches answered by BM25 alone (0 before first use)."""
        module = sys.modules.get("retrieval.search")  # `retrieval.search` the attribute is the function
        return getattr(module, "degraded_searches", 0)

    def _retrieve(self, paths: TenantPaths, cursor: completion.Cursor) -> tuple[list, bool]:
        """(hits, whether retrieval was used). A tenant without an index gets none."""
        if self.settings.retrieval.top_k == 0 or not paths.index_dir.is_dir():
            return [], False
        query = cursor.query(self.settings.retrieval.query_lines)
        degraded_before = self._degraded_count()
        try:
            hits = self._search(paths, query)
        except NotFound:
            return [], False
        except Exception as e:  # a broken index must not fail the completion
            log.warning("tenant %s: retrieval failed, completing without it: %s: %s", paths.tenant, type(e).__name__, e)
            self.metrics.retrieval_degraded.inc(tags={"reason": "error"})
            self.metrics.retrieval_up.set(0)
            return [], False
        if self._degraded_count() > degraded_before:  # hybrid answered by BM25 alone: vector store down
            self.metrics.retrieval_degraded.inc(tags={"reason": "vector_store_down"})
            self.metrics.retrieval_up.set(0)
        else:
            self.metrics.retrieval_up.set(1)
        if hits:  # a Ray counter refuses inc(0)
            self.metrics.retrieval_hits.inc(len(hits), tags={"mode": str(getattr(hits[0], "mode", "search"))})
        return hits, True

    def _definitions(self, paths: TenantPaths, cursor: completion.Cursor) -> tuple[pf.Signature, ...]:
        """The definitions the cursor uses (prompt.symbols): resolved from the request's prefix and
        suffix against the tenant's symbol table. A broken table must not fail the completion."""
        from retrieval.symbol_context import prompt_definitions  # here only: see the module docstring

        try:
            return prompt_definitions(paths, cursor.path, cursor.prefix, cursor.suffix,
                                      limit=self.settings.prompt.symbol_limit)
        except Exception as e:
            log.warning("tenant %s: symbol context failed, completing without it: %s: %s",
                        paths.tenant, type(e).__name__, e)
            return ()

    def _prepare(self, req: dict) -> _Prepared:
        paths = self.home.tenant(req["tenant"])
        cursor = completion.Cursor(req["prefix"], req["suffix"], req["path"], req.get("cursor_kind"))
        wanted = AdapterStore(paths).serving_system()
        ref = self._adapter(paths) if wanted.uses_adapter else None
        t0 = time.perf_counter()
        hits, used_rag = self._retrieve(paths, cursor) if wanted.uses_retrieval else ([], False)
        definitions = self._definitions(paths, cursor) if wanted.uses_retrieval and self.settings.prompt.symbols \
            else ()
        retrieval_ms = (time.perf_counter() - t0) * 1000
        budget = completion.prompt_budget(self.settings.prompt.budget_tokens, self.settings.engine.max_model_len,
                                          req["max_tokens"])
        try:
            prompt = completion.prompt(cursor, pf.snippets_from(hits), count=self.count_tokens, budget=budget,
                                       prompt_cfg=self.settings.prompt, template=self.template,
                                       definitions=definitions)
        except PromptTooLong as e:
            raise invalid(f"the prompt does not fit the context after trimming: {e}") from None
        kept = {(s.path, s.start_line, s.end_line) for s in prompt.snippets}
        snippets = [{"path": h.path, "start_line": h.start_line, "end_line": h.end_line,
                     "score": float(getattr(h, "score", 0.0))}
                    for h in hits if (h.path, h.start_line, h.end_line) in kept]
        model_req = {"request_id": req["request_id"], "prompt": prompt.text, "max_tokens": req["max_tokens"],
                     "temperature": req["temperature"], "stop": req["stop"], "adapter_id": adapter_model_id(ref),
                     "deadline": req.get("deadline"), "heal": prompt.heal,
                     "cache_salt": str(paths.tenant) if self.settings.serving.tenant_cache_salt else None,
                     "stop_token_ids": list(prompt.stop_token_ids)}
        retrieved = (used_rag and bool(snippets)) or bool(prompt.definitions)
        return _Prepared(model_req, System.of(ref is not None, retrieved).value, snippets, retrieval_ms, prompt,
                         str(paths.tenant), (len(prompt.definitions), prompt.dropped_definitions))

    def _handle(self, prep: _Prepared, stream: bool):
        opts = {"multiplexed_model_id": prep.model_req["adapter_id"]} if prep.model_req["adapter_id"] else {}
        if stream:
            opts["stream"] = True
        return self.model.options(**opts) if opts else self.model

    def _summary(self, prep: _Prepared, r: dict, model_ms: float, text: str) -> dict:
        if r.get("adapter_tenant", prep.tenant) not in ("", prep.tenant):
            # Never expected: fail closed rather than return text made with another tenant's adapter.
            log.error("request %s of tenant %s was generated with an adapter of tenant %s",
                      prep.model_req["request_id"], prep.tenant, r["adapter_tenant"])
            raise ServingError("INTERNAL", f"internal error (request id {prep.model_req['request_id']})")
        system = prep.system
        if r["adapter_fallback"]:  # the adapter failed to load: the base model answered
            system = System(system).without_adapter().value
        return {"text": text, "finish_reason": r["finish_reason"], "prompt_tokens": r["prompt_tokens"],
                "completion_tokens": r["completion_tokens"], "system": system,
                "adapter_version": r["adapter_version"], "snippets": prep.snippets,
                "retrieval_ms": prep.retrieval_ms, "generation_ms": r["generation_ms"],
                "queue_ms": max(0.0, model_ms - r["generation_ms"]),
                "definitions": prep.definitions[0], "dropped_definitions": prep.definitions[1]}

    async def complete(self, req: dict) -> dict:
        try:
            # Off the event loop: with retrieval this is tens of ms of embedding and search, and the
            # replica's user code shares its loop with Serve's own work (serving/app.py, SERVE_FAST_PATH).
            prep = await asyncio.to_thread(self._prepare, req)
        except ServingError as e:
            return e.as_dict()
        t0 = time.perf_counter()
        response = self._handle(prep, stream=False).generate.remote(prep.model_req)
        try:
            r = await response
        except asyncio.CancelledError:  # the caller's deadline or disconnect (a local front server)
            response.cancel()
            raise
        if "error" in r:
            return r
        done = prep.prompt.finish(r["text"])
        text = done.text
        if done.cut:
            r["finish_reason"] = "stop"
        try:
            return self._summary(prep, r, (time.perf_counter() - t0) * 1000, text)
        except ServingError as e:
            return e.as_dict()

    async def complete_stream(self, req: dict) -> AsyncIterator[dict]:
        """Yields {"text"} items and a last {"final": summary}, or one error item."""
        try:
            prep = await asyncio.to_thread(self._prepare, req)
        except ServingError as e:
            yield e.as_dict()
            return
        insertion = prep.prompt.stream()
        t0 = time.perf_counter()
        gen = self._handle(prep, stream=True).stream.remote(prep.model_req)
        model_done = False  # the model's stream ended (its final or error item came)
        try:
            async for item in gen:
                if "error" in item:
                    model_done = True
                    yield item
                    return
                if "final" in item:
                    model_done = True
                    tail = insertion.close()
                    if tail:
                        yield {"text": tail}
                    if insertion.cut:  # the last line repeated the code after the cursor
                        item["final"]["finish_reason"] = "stop"
                    try:
                        yield {"final": self._summary(prep, item["final"], (time.perf_counter() - t0) * 1000, "")}
                    except ServingError as e:
                        yield e.as_dict()
                    return
                out, cut = insertion.feed(item["text"])
                if out:
                    yield {"text": out}
                if cut:  # the model started repeating the code after the cursor: stop it (finally)
                    adapter_id = prep.model_req["adapter_id"]
                    yield {"final": {"text": "", "finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 0,
                                     "system": prep.system,
                                     "adapter_version": adapter_id.split("/")[1] if adapter_id else "",
                                     "snippets": prep.snippets, "retrieval_ms": prep.retrieval_ms,
                                     "generation_ms": (time.perf_counter() - t0) * 1000, "queue_ms": 0.0}}
                    return
        finally:
            # Cut, closed early or cancelled (a front server in this replica closes the stream;
            # through Serve, Serve cancels it): stop the generation, the engine frees its KV cache.
            if not model_done:
                gen.cancel()

