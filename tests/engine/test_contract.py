"""The engine contract (engine.protocol.EngineClient), run against every engine alike:
the test fake that the code above the engine is tested with, and the real vLLM engine
(the session engine of tests/fixtures/engine.py; marked engine and model)."""

from __future__ import annotations

import asyncio

import pytest

from codetailor.prompt_format import PromptParts, render
from engine.protocol import EngineClient, EngineHealth, GenerationRequest, GenerationResult
from tests.evaluation.fake_engine import OracleEngine

SOURCE = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    total = 0\n    for _ in range(b):\n"
          "        total = add(total, a)\n    return total\n\n\nclass Calculator:\n    def run(self, op, a, b):\n"
          "        return op(a, b)\n")
FILES = {"pkg/calc.py": SOURCE}
PROMPT = render(PromptParts(path="pkg/calc.py", prefix=SOURCE[:SOURCE.index("    total = 0")]))


@pytest.fixture(params=["fake", pytest.param("vllm", marks=[pytest.mark.engine, pytest.mark.model])])
def client(request) -> EngineClient:
    if request.param == "fake":
        return OracleEngine(FILES, right_when=lambda r: True)
    return request.getfixturevalue("engine")


def _run(coro):
    return asyncio.run(coro)


async def _collect(agen):
    return [item async for item in agen]


def test_a_missing_method_fails_at_construction():
    class Partial(EngineClient):
        async def generate(self, request):
            raise NotImplementedError

    with pytest.raises(TypeError, match="abstract"):
        Partial()


def test_is_an_engine_client_and_healthy(client):
    assert isinstance(client, EngineClient)
    h = _run(client.health())
    assert isinstance(h, EngineHealth) and h.ok, h.detail
    assert h.running_requests >= 0 and h.waiting_requests >= 0


def test_generate_keeps_the_request_id_and_the_token_budget(client):
    r = _run(client.generate(GenerationRequest(PROMPT, 6, request_id="contract-1")))
    assert isinstance(r, GenerationResult)
    assert r.request_id == "contract-1" and r.finish_reason in ("stop", "length")
    assert 0 < r.completion_tokens <= 6 and r.prompt_tokens > 0
    assert r.adapter is None


def test_stop_strings_end_the_text(client):
    r = _run(client.generate(GenerationRequest(PROMPT, 24, stop=("\n",), request_id="contract-2")))
    assert "\n" not in r.text and r.finish_reason == "stop"


def test_stream_grows_to_what_generate_returns(client):
    req = GenerationRequest(PROMPT, 12, request_id="contract-3")
    whole = _run(client.generate(req))
    items = _run(_collect(client.stream(GenerationRequest(PROMPT, 12, request_id="contract-4"))))
    assert items and all(i.finish_reason is None for i in items[:-1])
    assert items[-1].finish_reason == whole.finish_reason
    assert "".join(i.text for i in items) == whole.text
    assert items[-1].completion_tokens == whole.completion_tokens


def test_count_tokens_and_abort_of_an_unknown_request(client):
    short, long = client.count_tokens("def f():"), client.count_tokens("def f():\n    return 1\n" * 20)
    assert 0 < short < long
    _run(client.abort("contract-no-such-request"))
