"""A small synchronous client for editor gateways and the `complete` command.

    with CompletionClient("127.0.0.1", 50051, api_key) as c:
        r = c.complete(prefix="def add(a, b):\\n    return", path="m.py", max_tokens=16)
        c.report_outcome(r["id"], "accepted")

Errors raise `ClientError` carrying the gRPC status name and the server's message.
"""

from __future__ import annotations

from typing import Iterator

import grpc

from serving.stubs import load as load_stubs

pb, pb_grpc, apb, apb_grpc = load_stubs()
_OUTCOMES = {"accepted": pb.OUTCOME_ACCEPTED, "rejected": pb.OUTCOME_REJECTED, "edited": pb.OUTCOME_EDITED}
_CURSOR_KINDS = {None: pb.CompleteRequest.CURSOR_KIND_UNSPECIFIED, "line_start": pb.CompleteRequest.CURSOR_KIND_LINE_START,
                 "mid_line": pb.CompleteRequest.CURSOR_KIND_MID_LINE}


class ClientError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _info(info) -> dict:
    lat = info.latency
    return {"finish_reason": info.finish_reason, "prompt_tokens": info.prompt_tokens,
            "completion_tokens": info.completion_tokens, "system": info.system,
            "adapter_version": info.adapter_version,
            "snippets": [{"path": s.path, "start_line": s.start_line, "end_line": s.end_line, "score": s.score}
                         for s in info.snippets],
            "latency_ms": {"auth": lat.auth_ms, "retrieval": lat.retrieval_ms, "queue": lat.queue_ms,
                           "generation": lat.generation_ms, "total": lat.total_ms}}


class CompletionClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 50051, api_key: str | None = None,
                 *, root_cert: bytes | None = None, timeout: float | None = 60.0):
        target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if root_cert is not None:
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_cert))
        else:
            self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.CompletionServiceStub(self.channel)
        self.admin = apb_grpc.AdminServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.timeout = timeout

    def __enter__(self) -> "CompletionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, fn, request, timeout=None):
        try:
            return fn(request, metadata=self.metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise ClientError(e.code().name, e.details() or "") from None

    @staticmethod
    def request(prefix: str = "", suffix: str = "", path: str = "", language: str = "", max_tokens: int = 32,
                temperature: float = 0.0, stop=(), request_id: str = "", cursor_kind: str | None = None):
        """cursor_kind: "line_start", "mid_line" or None (the server infers it from the prefix)."""
        if cursor_kind not in _CURSOR_KINDS:
            raise ValueError(f"cursor_kind must be one of {sorted(k for k in _CURSOR_KINDS if k)} or None")
        return pb.CompleteRequest(prefix=prefix, suffix=suffix, path=path, language=language,
                                  max_tokens=max_tokens, temperature=temperature, stop=list(stop),
                                  request_id=request_id, cursor_kind=_CURSOR_KINDS[cursor_kind])

    def complete(self, timeout: float | None = None, **fields) -> dict:
        r = self._call(self.stub.Complete, self.request(**fields), timeout)
        return {"id": r.id, "text": r.text, "request_id": r.request_id, **_info(r.info)}

    def stream(self, timeout: float | None = None, **fields) -> Iterator[dict]:
        """Yields {"id", "text"} per chunk; the last also carries the info fields. Closing the
        iterator early cancels the call, so the server stops generating."""
        call = self.stub.CompleteStream(self.request(**fields), metadata=self.metadata,
                                        timeout=timeout or self.timeout)
        try:
            for c in call:
                item = {"id": c.id, "text": c.text, "request_id": c.request_id}
                if c.HasField("info"):
                    item.update(_info(c.info))
                yield item
        except grpc.RpcError as e:
            raise ClientError(e.code().name, e.details() or "") from None
        finally:
            call.cancel()  # a no-op once the call has ended

    def report_outcome(self, completion_id: str, outcome: str, kept_chars: int = 0) -> bool:
        r = self._call(self.stub.ReportOutcome, pb.ReportOutcomeRequest(
            completion_id=completion_id, outcome=_OUTCOMES[outcome], kept_chars=kept_chars))
        return r.duplicate
