"""The engine's own request ids: tenants share one vLLM engine, whose request ids (and
abort) live in one namespace, so a client's id must never reach vLLM. A stand-in for
AsyncLLM keyed by id, as vLLM is; the real engine is checked in test_engine.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

pytest.importorskip("vllm")

from codetailor.config import EngineConfig  # noqa: E402
from engine.loop_thread import LoopThread  # noqa: E402
from engine.protocol import GenerationRequest  # noqa: E402
from engine.resolver import AdapterResolver  # noqa: E402
from engine.vllm_engine import VllmEngine  # noqa: E402

STEPS = 5


class KeyedLLM:
    """Generates STEPS tokens per request; abort(id) ends every running request with that id."""

    tokenizer = None
    errored = False

    def __init__(self):
        self.running: dict[str, int] = {}  # vLLM id -> how many requests hold it
        self.aborted: list[str] = []
        self.ids: list[str] = []
        self.salts: list[str | None] = []

    async def generate(self, prompt, params, request_id, lora_request=None):
        self.ids.append(request_id)
        self.salts.append(prompt.get("cache_salt") if isinstance(prompt, dict) else None)
        self.running[request_id] = self.running.get(request_id, 0) + 1
        try:
            for i in range(STEPS):
                await asyncio.sleep(0.01)
                aborted = request_id in self.aborted  # vLLM ends an aborted request with one last output
                last = aborted or i == STEPS - 1
                reason = "abort" if aborted else "length" if last else None
                yield SimpleNamespace(
                    outputs=[SimpleNamespace(text=f"t{i}", token_ids=[i], finish_reason=reason)],
                    prompt_token_ids=[1, 2], finished=last, metrics=None)
                if aborted:
                    return
        finally:
            self.running[request_id] -= 1

    async def abort(self, request_id):
        ids = [request_id] if isinstance(request_id, str) else list(request_id)
        self.aborted.extend(ids)

    def shutdown(self):
        pass


def _engine(llm, tmp_path):
    return VllmEngine(llm, LoopThread(), AdapterResolver(tmp_path), EngineConfig(), tmp_path)


def test_a_tenant_reusing_another_tenants_id_cannot_cancel_it(tmp_path):
    llm = KeyedLLM()
    eng = _engine(llm, tmp_path)

    async def tenant_a():
        return await eng.generate(GenerationRequest("def a():", STEPS, request_id="same"))

    async def tenant_b_cancels():
        stream = eng.stream(GenerationRequest("def b():", STEPS, request_id="same"))
        first = await stream.__anext__()
        await stream.aclose()  # B stops early: the engine aborts B's request
        return first

    async def both():
        return await asyncio.gather(tenant_a(), tenant_b_cancels())

    a, b_first = asyncio.run(both())
    assert a.finish_reason == "length" and a.completion_tokens == 1  # ran to its end (one token per step here)
    assert a.request_id == "same" and b_first.request_id == "same"  # the client's id on results
    assert "same" not in llm.ids and len(set(llm.ids)) == 2        # vLLM saw ids of its own
    assert len(llm.aborted) == 1 and llm.aborted[0] != llm.ids[0]   # only B's request was aborted
    asyncio.run(eng.shutdown())


def test_abort_by_client_id_reaches_the_engine_ids(tmp_path):
    llm = KeyedLLM()
    eng = _engine(llm, tmp_path)

    async def run():
        task = asyncio.ensure_future(eng.generate(GenerationRequest("x", STEPS, request_id="mine")))
        while not llm.ids:
            await asyncio.sleep(0.005)
        await eng.abort("mine")
        await eng.abort("unknown")  # nothing of that id runs: nothing is aborted
        return task

    async def main():
        return await (await run())

    result = asyncio.run(main())
    assert llm.aborted == [llm.ids[0]]
    assert result.finish_reason == "abort"
    asyncio.run(eng.shutdown())


def test_the_cache_salt_reaches_vllm_with_the_prompt(tmp_path):
    llm = KeyedLLM()
    eng = _engine(llm, tmp_path)
    asyncio.run(eng.generate(GenerationRequest("def a():", STEPS, cache_salt="acme")))
    asyncio.run(eng.generate(GenerationRequest("def a():", STEPS)))
    assert llm.salts == ["acme", None]
    asyncio.run(eng.shutdown())
