"""The gRPC front server: the only thing clients talk to.

A thin grpc.aio server (Ray Serve's own gRPC proxy binds [::] without TLS or
reflection): TLS when a certificate is configured, the configured bind address
(127.0.0.1 by default), standard health checking and server reflection, auth
from `authorization: Bearer <key>`, validation, a per-tenant concurrency limit,
deadlines, and the status-code contract (serving.status).

It reaches the ingress's per-request work through `IngressCalls`, two ways:
- `LocalIngress`: the front runs inside the Ingress replica (`codetailor serve`,
  see serving/ingress.py) and calls it directly, one Serve hop fewer;
- `HandleIngress`: the front runs in a process of its own (`serve --attach`, the
  Helm chart's gateway sidecar) and calls the Ingress deployment through a handle.

Requests are deserialised by our own function so that a string field holding
invalid UTF-8 becomes INVALID_ARGUMENT rather than grpc's generic error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from codetailor.config import Settings
from codetailor.errors import AuthError, ConfigError, PermissionDenied
from codetailor.home import Home
from codetailor.tenants import Principal, Registry, Role
from serving import admin as admin_ops
from serving.outcomes import OutcomeStore
from serving.status import ServingError, classify, from_dict
from serving.stubs import load as load_stubs
from serving.tenant_state import MAX_HOLD_S, LocalTenantState
from serving.validation import loggable_request_id, new_request_id, validate_completion

log = logging.getLogger("codetailor.serving.front")
pb, pb_grpc, apb, apb_grpc = load_stubs()
SERVICE = "codetailor.v1.CompletionService"
ADMIN_SERVICE = "codetailor.v1.AdminService"
_OUTCOME_NAMES = {pb.OUTCOME_ACCEPTED: "accepted", pb.OUTCOME_REJECTED: "rejected", pb.OUTCOME_EDITED: "edited"}


@dataclass
class _Call:
    """A completion call as far as it got: when it started, its request id (ours until the client's
    is validated), and once authenticated its tenant and the milliseconds that took."""
    t0: float
    rid: str
    tenant: str = ""
    auth_ms: float = 0.0

    def ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000


class _Unparsable:
    """Stands for a request whose bytes did not parse (e.g. invalid UTF-8)."""


def _deserializer(cls):
    def parse(data: bytes):
        try:
            return cls.FromString(data)
        except Exception:
            return _Unparsable()
    return parse


class IngressCalls:
    """What the front server needs of the ingress: a completion, and a stream of
    {"text"} items ending in {"final": summary} (or one error item). Cancelling the
    caller, or closing the stream early, must stop the generation."""

    async def complete(self, req: dict) -> dict:
        raise NotImplementedError

    def complete_stream(self, req: dict) -> AsyncIterator[dict]:
        raise NotImplementedError

    async def tenant_write(self, settings: Settings, op: str, tenant: str, args: dict) -> dict:
        """A change to the tenant's files (serving.admin.tenant_write), here: this process may write
        the home. The gateway's home is read-only, so HandleIngress asks the Ingress deployment."""
        return await asyncio.to_thread(admin_ops.tenant_write, settings, op, tenant, args)


class LocalIngress(IngressCalls):
    """The Ingress object of this process (the front runs in its replica)."""

    def __init__(self, ingress):
        self._ingress = ingress

    async def complete(self, req: dict) -> dict:
        return await self._ingress.complete(req)

    def complete_stream(self, req: dict) -> AsyncIterator[dict]:
        return self._ingress.complete_stream(req)


class HandleIngress(IngressCalls):
    """The Ingress deployment through a Serve handle (the front in a process of its own)."""

    def __init__(self, handle):
        self._handle = handle

    async def complete(self, req: dict) -> dict:
        response = self._handle.complete.remote(req)
        try:
            return await response
        except asyncio.CancelledError:  # deadline or client gone: Serve cancels the replica's work
            response.cancel()
            raise

    async def tenant_write(self, settings: Settings, op: str, tenant: str, args: dict) -> dict:
        return await self._handle.tenant_write.remote(op, tenant, args)

    async def complete_stream(self, req: dict) -> AsyncIterator[dict]:
        gen = self._handle.options(stream=True).complete_stream.remote(req)
        done = False
        try:
            async for item in gen:
                done = "final" in item
                yield item
        finally:
            if not done:  # closed early, failed or cancelled: stop the generation
                gen.cancel()


class FrontServer:
    """ingress: an `IngressCalls`, or a Serve handle to the Ingress deployment.
    reuse_port: let several processes (the Ingress replicas) listen on one port; off,
    a port that is taken fails the start instead of being silently shared.
    tenant_state: where requests in flight and issued completion ids are kept
    (serving/tenant_state.py): this process by default; with several front servers,
    the cluster's shared one."""

    def __init__(self, settings: Settings, ingress, model_handle=None, *, reuse_port: bool = False,
                 tenant_state=None):
        self.settings = settings
        self.cfg = settings.serving
        self.home = Home(settings.home)
        self.registry = Registry(self.home, settings.key_pepper)
        self.ingress = ingress if isinstance(ingress, IngressCalls) else HandleIngress(ingress)
        self.model = model_handle
        self.reuse_port = reuse_port
        self.state = tenant_state if tenant_state is not None else LocalTenantState()
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._tasks: list[asyncio.Task] = []
        self.port: int | None = None
        self.tls = False  # what start() really serves
        from serving.metrics import metrics

        self.metrics = metrics()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> int:
        host = host or self.cfg.host
        port = self.cfg.port if port is None else port
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4 * self.cfg.max_prompt_chars + 65536),
                                          ("grpc.so_reuseport", int(self.reuse_port))])
        server.add_generic_rpc_handlers((self._completion_handlers(), self._admin_handlers()))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (SERVICE, ADMIN_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        addr = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.tls = self.cfg.tls
        if self.tls:
            creds = grpc.ssl_server_credentials([(self._read_tls(self.cfg.tls_key), self._read_tls(self.cfg.tls_cert))])
            self.port = server.add_secure_port(addr, creds)
        else:
            self.port = server.add_insecure_port(addr)
        await server.start()
        self._server = server
        await self._set_health(True)
        self._tasks.append(asyncio.get_running_loop().create_task(self._background()))
        return self.port

    @staticmethod
    def _read_tls(path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the TLS file {path}: {e.strerror or e}") from None

    async def stop(self, grace: float = 2.0) -> None:
        await self._set_health(False)
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            await self._server.stop(grace)

    async def _set_health(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE, ADMIN_SERVICE):
            r = self._health.set(name, status)
            if asyncio.iscoroutine(r):
                await r

    async def _background(self) -> None:
        """Tenant gauges, and health from the model deployment, every few seconds."""
        while True:
            try:
                await asyncio.to_thread(admin_ops.refresh_tenant_gauges, self.home, self.metrics)
                if self.model is not None:
                    h = await asyncio.wait_for(self.model.health.remote(), 10)
                    await self._set_health(bool(h["ok"]))
            except asyncio.CancelledError:
                raise
            except asyncio.TimeoutError:
                # The probe queues behind real requests (max_ongoing_requests): a busy model
                # is not an unhealthy one, so leave the health status as it is.
                log.info("model health probe timed out (busy); health unchanged")
            except Exception as e:
                log.warning("background refresh: %s: %s", type(e).__name__, e)
                if self.model is not None:
                    await self._set_health(False)
            await asyncio.sleep(5)

    # -- handlers ------------------------------------------------------------------------
    def _completion_handlers(self):
        unary = lambda fn, req, resp: grpc.unary_unary_rpc_method_handler(  # noqa: E731
            fn, request_deserializer=_deserializer(req), response_serializer=resp.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Complete": unary(self.Complete, pb.CompleteRequest, pb.CompleteResponse),
            "CompleteStream": grpc.unary_stream_rpc_method_handler(
                self.CompleteStream, request_deserializer=_deserializer(pb.CompleteRequest),
                response_serializer=pb.CompleteChunk.SerializeToString),
            "ReportOutcome": unary(self.ReportOutcome, pb.ReportOutcomeRequest, pb.ReportOutcomeResponse),
        })

    def _admin_handlers(self):
        def h(fn, req, resp):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=_deserializer(req), response_serializer=resp.SerializeToString)
        return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {
            "ReloadTenant": h(self.ReloadTenant, apb.TenantRequest, apb.TenantStatus),
            "ListAdapters": h(self.ListAdapters, apb.TenantRequest, apb.ListAdaptersResponse),
            "ActivateAdapter": h(self.ActivateAdapter, apb.ActivateAdapterRequest, apb.TenantStatus),
            "RollbackAdapter": h(self.RollbackAdapter, apb.TenantRequest, apb.TenantStatus),
            "GetUsage": h(self.GetUsage, apb.TenantRequest, apb.UsageResponse),
            "AddSource": h(self.AddSource, apb.AddSourceRequest, apb.SourceInfo),
            "ListSources": h(self.ListSources, apb.TenantRequest, apb.ListSourcesResponse),
            "RemoveSource": h(self.RemoveSource, apb.RemoveSourceRequest, apb.RemoveSourceResponse),
            "RefreshSources": h(self.RefreshSources, apb.TenantRequest, apb.RefreshSourcesResponse),
        })

    # -- common pieces ---------------------------------------------------------------------
    def _auth(self, context) -> Principal:
        md = dict(context.invocation_metadata() or ())
        value = md.get("authorization", "")
        if not value.startswith("Bearer "):
            raise AuthError("missing API key: send `authorization: Bearer <key>` metadata")
        return self.registry.authenticate(value[len("Bearer "):].strip())

    @asynccontextmanager
    async def _tenant_slot(self, tenant: str, deadline: float | None = None):
        """One of the tenant's `tenant_concurrency` slots, across every front server that shares
        `self.state`; held until the request ends (or its lease expires, should this process die)."""
        hold = MAX_HOLD_S if deadline is None else deadline - time.time() + 5.0
        slot = await self.state.acquire(tenant, self.cfg.tenant_concurrency, hold)
        if slot is None:
            raise ServingError("RESOURCE_EXHAUSTED",
                               f"this tenant already has {self.cfg.tenant_concurrency} requests in flight; retry later")
        try:
            yield
        finally:
            self.state.release(slot)

    async def _fail(self, context, method: str, tenant: str, rid: str, exc: BaseException):
        code, message = classify(exc)
        if message is None:
            log.error("request %s (%s, tenant %s) failed", rid, method, tenant or "-", exc_info=exc)
            message = f"internal error (request id {rid})"
        else:
            log.info("request %s (%s, tenant %s): %s %s", rid, method, tenant or "-", code, message)
        self.metrics.requests.inc(tags={"tenant": tenant or "-", "method": method, "code": code})
        await context.abort(getattr(grpc.StatusCode, code), message)

    def _deadline(self, context) -> float | None:
        left = context.time_remaining()
        if left is None:
            return None
        if left <= 0.001:
            raise ServingError("DEADLINE_EXCEEDED", "the deadline passed before the request started")
        return time.time() + left

    def _completion_input(self, request, principal: Principal, rid: str, deadline: float | None) -> dict:
        if isinstance(request, _Unparsable):
            raise ServingError("INVALID_ARGUMENT", "the request is not a valid CompleteRequest (bad UTF-8 in a string field?)")
        if not request.request_id:
            request.request_id = rid
        inp = validate_completion(request, self.cfg)  # refuses a malformed client id
        return dict(inp.as_dict(), tenant=str(principal.tenant), deadline=deadline)

    def _admit(self, call: _Call, request, context) -> dict:
        """Authenticate and validate a completion request. `call` takes the tenant and then the
        client's request id as each becomes known, so an error is reported under what is known."""
        principal = self._auth(context)
        call.tenant = str(principal.tenant)
        call.auth_ms = call.ms()
        req = self._completion_input(request, principal, call.rid, self._deadline(context))
        call.rid = req["request_id"]
        return req

    def _info(self, s: dict, auth_ms: float, total_ms: float):
        return pb.CompletionInfo(
            finish_reason=s["finish_reason"] or "", prompt_tokens=s["prompt_tokens"],
            completion_tokens=s["completion_tokens"], system=s["system"], adapter_version=s["adapter_version"],
            snippets=[pb.SnippetLocation(**x) for x in s["snippets"]],
            latency=pb.Latency(auth_ms=auth_ms, retrieval_ms=s["retrieval_ms"], queue_ms=s["queue_ms"],
                               generation_ms=s["generation_ms"], total_ms=total_ms))

    async def _remember(self, cid: str, tenant: str, text_len: int, s: dict) -> None:
        await self.state.remember(cid, {"tenant": tenant, "length": text_len, "system": s["system"],
                                        "adapter_version": s["adapter_version"]})

    def _observe(self, tenant: str, method: str, s: dict, auth_ms: float, total_ms: float) -> None:
        m = self.metrics
        m.requests.inc(tags={"tenant": tenant, "method": method, "code": "OK"})
        for stage, ms in (("auth", auth_ms), ("retrieval", s["retrieval_ms"]), ("queue", s["queue_ms"]),
                          ("generation", s["generation_ms"]), ("total", total_ms)):
            m.observe_latency(stage, ms)
        m.tokens.inc(s["prompt_tokens"], tags={"direction": "in"})
        m.tokens.inc(s["completion_tokens"], tags={"direction": "out"})

    # -- CompletionService ---------------------------------------------------------------------
    async def Complete(self, request, context):
        call = _Call(time.perf_counter(), loggable_request_id(getattr(request, "request_id", "")))
        try:
            req = self._admit(call, request, context)
            async with self._tenant_slot(call.tenant, req["deadline"]):
                left = None if req["deadline"] is None else req["deadline"] - time.time()
                s = await asyncio.wait_for(self.ingress.complete(req), left)  # a timeout cancels it
            if "error" in s:
                raise from_dict(s)
            cid = "cmp-" + uuid.uuid4().hex
            await self._remember(cid, call.tenant, len(s["text"]), s)
            total_ms = call.ms()
            self._observe(call.tenant, "Complete", s, call.auth_ms, total_ms)
            return pb.CompleteResponse(id=cid, text=s["text"], info=self._info(s, call.auth_ms, total_ms),
                                       request_id=call.rid)
        except asyncio.CancelledError:
            log.info("request %s cancelled by the client", call.rid)
            raise
        except Exception as e:
            await self._fail(context, "Complete", call.tenant, call.rid, e)

    async def CompleteStream(self, request, context):
        call = _Call(time.perf_counter(), loggable_request_id(getattr(request, "request_id", "")))
        try:
            req = self._admit(call, request, context)
            cid = "cmp-" + uuid.uuid4().hex
            length = 0
            # Closing the stream (return, error, cancellation) stops the generation (IngressCalls).
            async with self._tenant_slot(call.tenant, req["deadline"]):
                async with aclosing(self.ingress.complete_stream(req)) as gen:
                    async for item in gen:
                        if "error" in item:
                            raise from_dict(item)
                        if "final" in item:
                            s = item["final"]
                            await self._remember(cid, call.tenant, length, s)
                            total_ms = call.ms()
                            self._observe(call.tenant, "CompleteStream", s, call.auth_ms, total_ms)
                            yield pb.CompleteChunk(id=cid, info=self._info(s, call.auth_ms, total_ms),
                                                   request_id=call.rid)
                            return
                        length += len(item["text"])
                        yield pb.CompleteChunk(id=cid, text=item["text"], request_id=call.rid)
            raise ServingError("UNAVAILABLE", "the completion stream ended early")
        except asyncio.CancelledError:  # client went away or deadline: the generation stopped above
            log.info("stream %s cancelled", call.rid)
            raise
        except Exception as e:
            await self._fail(context, "CompleteStream", call.tenant, call.rid, e)

    async def ReportOutcome(self, request, context):
        rid, tenant = new_request_id(), ""
        try:
            principal = self._auth(context)
            tenant = str(principal.tenant)
            if isinstance(request, _Unparsable):
                raise ServingError("INVALID_ARGUMENT", "the request is not a valid ReportOutcomeRequest")
            issued = await self.state.lookup(request.completion_id, tenant)
            if issued is None:  # unknown, expired, or another tenant's (which must look unknown)
                raise ServingError("NOT_FOUND", "unknown or expired completion id")
            outcome = _OUTCOME_NAMES.get(request.outcome)
            if outcome is None:
                raise ServingError("INVALID_ARGUMENT", "outcome must be ACCEPTED, REJECTED or EDITED")
            kept = {"accepted": issued["length"], "rejected": 0}.get(outcome, request.kept_chars)
            if not 0 <= kept <= issued["length"]:
                raise ServingError("INVALID_ARGUMENT", f"kept_chars must be 0..{issued['length']}")
            if not await self.state.claim(request.completion_id):
                self.metrics.requests.inc(tags={"tenant": tenant, "method": "ReportOutcome", "code": "OK"})
                return pb.ReportOutcomeResponse(duplicate=True)
            await self._write("record_outcome", tenant, {
                "completion_id": request.completion_id, "outcome": outcome, "kept": kept,
                "system": issued["system"], "adapter_version": issued["adapter_version"]})
            self.metrics.outcomes.inc(tags={"tenant": tenant, "outcome": outcome})
            if kept:
                self.metrics.accepted_chars.inc(kept, tags={"tenant": tenant})
            self.metrics.requests.inc(tags={"tenant": tenant, "method": "ReportOutcome", "code": "OK"})
            return pb.ReportOutcomeResponse(duplicate=False)
        except Exception as e:
            await self._fail(context, "ReportOutcome", tenant, rid, e)

    # -- AdminService ----------------------------------------------------------------------------
    async def _admin(self, context, method: str, request, action):
        rid, tenant = new_request_id(), ""
        try:
            principal = self._auth(context)
            tenant = str(principal.tenant)
            if principal.role != Role.admin:
                raise PermissionDenied("this operation needs an admin key")
            if isinstance(request, _Unparsable):
                raise ServingError("INVALID_ARGUMENT", "the request is not a valid message")
            if request.tenant and request.tenant != tenant:
                raise PermissionDenied("an admin key acts on its own tenant only")
            # Admin calls (an activation hashes and loads files) count against the tenant's limit too.
            async with self._tenant_slot(tenant, self._deadline(context)):
                result = await action(self.home.tenant(principal.tenant), request)
            self.metrics.requests.inc(tags={"tenant": tenant, "method": method, "code": "OK"})
            return result
        except Exception as e:
            await self._fail(context, method, tenant, rid, e)

    async def _write(self, op: str, tenant: str, args: dict):
        r = await self.ingress.tenant_write(self.settings, op, tenant, args)
        if "error" in r:
            raise from_dict(r)
        return r["result"]

    def _status_msg(self, s: dict):
        return apb.TenantStatus(**s)

    async def ReloadTenant(self, request, context):
        async def act(paths, _):
            await asyncio.to_thread(admin_ops.refresh_tenant_gauges, self.home, self.metrics)
            if self.model is not None:
                await self.model.drop_stale.remote()
            return self._status_msg(admin_ops.status(paths))
        return await self._admin(context, "ReloadTenant", request, act)

    async def ListAdapters(self, request, context):
        async def act(paths, _):
            rows = await asyncio.to_thread(admin_ops.adapters, paths)
            return apb.ListAdaptersResponse(status=self._status_msg(admin_ops.status(paths)),
                                            adapters=[apb.AdapterInfo(**r) for r in rows])
        return await self._admin(context, "ListAdapters", request, act)

    async def ActivateAdapter(self, request, context):
        async def act(paths, req):
            if not req.version:
                raise ServingError("INVALID_ARGUMENT", "version is required")
            s = await self._write("activate", str(paths.tenant), {"version": req.version})
            await asyncio.to_thread(admin_ops.refresh_tenant_gauges, self.home, self.metrics)
            return self._status_msg(s)
        return await self._admin(context, "ActivateAdapter", request, act)

    async def RollbackAdapter(self, request, context):
        async def act(paths, _):
            s = await self._write("rollback", str(paths.tenant), {})
            await asyncio.to_thread(admin_ops.refresh_tenant_gauges, self.home, self.metrics)
            return self._status_msg(s)
        return await self._admin(context, "RollbackAdapter", request, act)

    async def GetUsage(self, request, context):
        async def act(paths, _):
            return apb.UsageResponse(**await asyncio.to_thread(OutcomeStore(paths).summary))
        return await self._admin(context, "GetUsage", request, act)


    # Sources: checked here as well as where they are written, so a gateway refuses bad input itself.
    async def AddSource(self, request, context):
        async def act(paths, req):
            from codetailor.names import SourceName
            from codetailor.sources import check_branch, check_url

            args = {"name": SourceName(req.name), "url": check_url(req.url, tenant_facing=True),
                    "branch": check_branch(req.branch or None), "credential": req.credential or None}
            return apb.SourceInfo(**await self._write("add_source", str(paths.tenant), args))
        return await self._admin(context, "AddSource", request, act)

    async def ListSources(self, request, context):
        async def act(paths, _):
            rows = await asyncio.to_thread(admin_ops.sources, self.settings, paths)
            return apb.ListSourcesResponse(tenant=str(paths.tenant), sources=[apb.SourceInfo(**r) for r in rows])
        return await self._admin(context, "ListSources", request, act)

    async def RemoveSource(self, request, context):
        async def act(paths, req):
            from codetailor.names import SourceName

            name = SourceName(req.name)
            return apb.RemoveSourceResponse(**await self._write("remove_source", str(paths.tenant), {"name": name}))
        return await self._admin(context, "RemoveSource", request, act)

    async def RefreshSources(self, request, context):
        async def act(paths, _):
            return apb.RefreshSourcesResponse(**await self._write("refresh_sources", str(paths.tenant), {}))
        return await self._admin(context, "RefreshSources", request, act)
