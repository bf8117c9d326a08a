"""VllmEngine's error mapping, around a stand-in for AsyncLLM (no model needed).
The real engine's errors are checked in test_engine.py."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("vllm")

from codetailor.config import EngineConfig  # noqa: E402
from engine.loop_thread import LoopThread  # noqa: E402
from engine.protocol import EngineDead, EngineError, GenerationRequest, RequestRejected  # noqa: E402
from engine.resolver import AdapterResolver  # noqa: E402
from engine.vllm_engine import VllmEngine  # noqa: E402


class StandIn:
    tokenizer = None

    def __init__(self, error: Exception | None = None, errored: bool = False):
        self.error, self.errored, self.dead_error = error, errored, "core process exited"
        self.aborted, self.shut = [], False

    async def generate(self, prompt, params, request_id, lora_request=None):
        raise self.error
        yield  # an async generator, like AsyncLLM.generate

    async def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self):
        self.shut = True


def _engine(llm, tmp_path):
    return VllmEngine(llm, LoopThread(), AdapterResolver(tmp_path), EngineConfig(), tmp_path)


def _gen(engine, **kw):
    return asyncio.run(engine.generate(GenerationRequest("def f():", 4, request_id="r1", **kw)))


def test_validation_errors_become_request_rejected(tmp_path):
    from vllm.exceptions import VLLMValidationError

    llm = StandIn(VLLMValidationError("prompt too long"))
    eng = _engine(llm, tmp_path)
    with pytest.raises(RequestRejected, match="prompt too long"):
        _gen(eng)
    assert len(llm.aborted) == 1 and llm.aborted[0] != "r1"  # nothing left behind (under the engine's own id)
    asyncio.run(eng.shutdown())


def test_unexpected_errors_become_engine_error_with_the_cause(tmp_path):
    eng = _engine(StandIn(RuntimeError("worker exploded")), tmp_path)
    with pytest.raises(EngineError, match="generation failed: RuntimeError: worker exploded"):
        _gen(eng)
    asyncio.run(eng.shutdown())


def test_a_dead_engine_says_so(tmp_path):
    eng = _engine(StandIn(RuntimeError("x"), errored=True), tmp_path)
    with pytest.raises(EngineDead, match="died: core process exited"):
        _gen(eng)
    assert not asyncio.run(eng.health()).ok
    asyncio.run(eng.shutdown())


def test_calls_after_shutdown_raise_engine_dead(tmp_path):
    llm = StandIn(RuntimeError("x"))
    eng = _engine(llm, tmp_path)
    asyncio.run(eng.shutdown())
    assert llm.shut
    with pytest.raises(EngineDead, match="shut down"):
        _gen(eng)
    assert asyncio.run(eng.health()).ok is False
    asyncio.run(eng.shutdown())  # twice is fine


def test_bad_params_are_rejected_before_the_engine(tmp_path):
    eng = _engine(StandIn(RuntimeError("never reached")), tmp_path)
    with pytest.raises(RequestRejected, match="invalid generation parameters"):
        asyncio.run(eng.generate(GenerationRequest("x", 4, temperature=-1.0)))
    asyncio.run(eng.shutdown())


def test_start_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match="no model checkpoint"):
        VllmEngine.start(EngineConfig(), tmp_path / "nowhere", home=tmp_path)
    with pytest.raises(EngineError, match="needs `home`"):
        VllmEngine.start(EngineConfig(), tmp_path)
