"""The front server's two ways to reach the ingress (`IngressCalls`), without Ray:
a deadline or a client that goes away must stop the ingress' work, and a stream
closed early must close the ingress' generator (which is what cancels the
generation in the engine, serving/ingress.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.client import ClientError, CompletionClient
from serving.front import FrontServer, HandleIngress, IngressCalls, LocalIngress

SUMMARY = {"text": " x", "finish_reason": "length", "prompt_tokens": 3, "completion_tokens": 1, "system": "base",
           "adapter_version": "", "snippets": [], "retrieval_ms": 0.0, "generation_ms": 1.0, "queue_ms": 0.0}
FIELDS = dict(prefix="def f():\n    return", path="m.py", max_tokens=4)


class SlowIngress:
    """Stands for serving.ingress.Ingress: records how its calls ended."""

    def __init__(self, delay: float):
        self.delay = delay
        self.ended: list[str] = []

    async def complete(self, req: dict) -> dict:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.ended.append("complete cancelled")
            raise
        self.ended.append("complete done")
        return dict(SUMMARY)

    async def complete_stream(self, req: dict):
        try:
            for i in range(1000):
                yield {"text": f"t{i} "}
                await asyncio.sleep(self.delay / 1000)
            self.ended.append("stream done")  # as Ingress.complete_stream: the model's stream ended
            yield {"final": dict(SUMMARY)}     # the front server closes us here
        finally:
            if not self.ended or self.ended[-1] != "stream done":
                self.ended.append("stream closed early")


@pytest.fixture
def served(tmp_path):
    from codetailor.config import load_settings
    from codetailor.home import Home
    from codetailor.tenants import Registry

    settings = load_settings(home=tmp_path, key_pepper="p")
    _, key = Registry(Home(tmp_path), "p").create_tenant("acme")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fronts = []

    def start(calls: IngressCalls) -> int:
        front = FrontServer(settings, calls)
        fronts.append(front)
        return asyncio.run_coroutine_threadsafe(front.start(port=0), loop).result(30)

    yield start, key
    for front in fronts:
        asyncio.run_coroutine_threadsafe(front.stop(0.1), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_local_ingress_answers_and_a_deadline_cancels_it(served):
    start, key = served
    fast, slow = SlowIngress(0.0), SlowIngress(30.0)
    with CompletionClient("127.0.0.1", start(LocalIngress(fast)), key) as c:
        assert c.complete(**FIELDS)["text"] == " x"
    assert fast.ended == ["complete done"]
    with CompletionClient("127.0.0.1", start(LocalIngress(slow)), key) as c:
        with pytest.raises(ClientError) as e:
            c.complete(timeout=0.5, **FIELDS)
    assert e.value.code == "DEADLINE_EXCEEDED"
    assert asyncio.run(_wait_for(lambda: slow.ended == ["complete cancelled"])), slow.ended


def test_a_stream_the_client_leaves_closes_the_ingress_stream(served):
    start, key = served
    ingress = SlowIngress(60.0)
    with CompletionClient("127.0.0.1", start(LocalIngress(ingress)), key) as c:
        stream = c.stream(**FIELDS)
        assert next(stream)["text"] == "t0 "
        stream.close()   # cancels the call (serving/client.py)
        assert asyncio.run(_wait_for(lambda: ingress.ended == ["stream closed early"])), ingress.ended


def test_a_whole_stream_ends_normally(served):
    start, key = served
    ingress = SlowIngress(0.0)
    with CompletionClient("127.0.0.1", start(LocalIngress(ingress)), key) as c:
        items = list(c.stream(**FIELDS))
    assert "".join(i["text"] for i in items) == "".join(f"t{i} " for i in range(1000))
    assert ingress.ended == ["stream done"]


class _Response:
    """A Serve DeploymentResponse stand-in: awaitable, with cancel()."""

    def __init__(self, coro):
        self.task = asyncio.ensure_future(coro)
        self.cancelled = False

    def __await__(self):
        return self.task.__await__()

    def cancel(self):
        self.cancelled = True
        self.task.cancel()


def test_handle_ingress_cancels_the_serve_call():
    class Handle:
        responses: list = []

        class complete:  # noqa: N801 - mimics `handle.complete.remote(...)`
            @staticmethod
            def remote(req):
                r = _Response(asyncio.sleep(30))
                Handle.responses.append(r)
                return r

    async def run():
        calls = HandleIngress(Handle())
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(calls.complete({}), 0.05)

    asyncio.run(run())
    assert [r.cancelled for r in Handle.responses] == [True]


async def _wait_for(cond, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_a_request_id_cannot_forge_log_lines(served, caplog):
    """The client's request_id is logged only once it is known to be well formed: a newline in it
    would otherwise start a forged log line (before validation, e.g. on a failed auth)."""
    import logging

    start, key = served
    port = start(LocalIngress(SlowIngress(0.0)))
    evil = "r1\n2026-01-01 INFO codetailor.serving.front request admin granted"
    with caplog.at_level(logging.INFO, logger="codetailor.serving.front"):
        with CompletionClient("127.0.0.1", port, "ct_000000000000_wrong") as c:
            with pytest.raises(ClientError) as e:
                c.complete(request_id=evil, **FIELDS)
            assert e.value.code == "UNAUTHENTICATED"
        with CompletionClient("127.0.0.1", port, key) as c:
            with pytest.raises(ClientError) as e:
                c.complete(request_id=evil, **FIELDS)
            assert e.value.code == "INVALID_ARGUMENT" and "request_id" in e.value.message
            with pytest.raises(ClientError):
                list(c.stream(request_id=evil, **FIELDS))
    logged = [r.getMessage() for r in caplog.records]
    assert logged and not any("admin granted" in m or "\n" in m for m in logged), logged


def test_both_completion_calls_report_under_what_they_know(served, caplog):
    """A refused key is logged with no tenant, a refused request under its tenant (and the server's
    request id when the client's is malformed); an answer carries the client's id. Unary and stream alike."""
    import logging

    start, key = served
    port = start(LocalIngress(SlowIngress(0.0)))
    calls = {"Complete": lambda c, **f: c.complete(**f), "CompleteStream": lambda c, **f: list(c.stream(**f))[-1]}
    for method, call in calls.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="codetailor.serving.front"):
            with CompletionClient("127.0.0.1", port, "ct_000000000000_wrong") as c:
                with pytest.raises(ClientError, match="UNAUTHENTICATED"):
                    call(c, request_id="r-1", **FIELDS)
            with CompletionClient("127.0.0.1", port, key) as c:
                with pytest.raises(ClientError, match="INVALID_ARGUMENT"):
                    call(c, request_id="bad id", **FIELDS)
                assert call(c, request_id="r-3", **FIELDS)["request_id"] == "r-3"
        refused = [r.getMessage() for r in caplog.records if f"({method}, tenant" in r.getMessage()]
        assert len(refused) == 2, refused
        assert refused[0].startswith(f"request r-1 ({method}, tenant -): UNAUTHENTICATED")
        assert refused[1].startswith("request req-") and f"({method}, tenant acme): INVALID_ARGUMENT" in refused[1]
