"""Token healing: the shared prompt format's split, the vocabulary index, and the real
engine finishing a word the cursor sits in (engine/token_healing.py)."""

from __future__ import annotations

import asyncio

import pytest

from codetailor.prompt_format import heal
from engine.protocol import GenerationRequest


@pytest.mark.parametrize("prefix, kept, partial", [
    ("for x in ite", "for x in", " ite"),       # the token's leading space goes with the word
    ("    ite", "   ", " ite"),                # BPE: "\n   " + " ite", so one space goes too
    ("ite", "", "ite"),
    ("foo(", "foo(", ""),                       # not inside a word: nothing to heal
    ("a.b", "a.", "b"),
    ("f(a, b", "f(a,", " b"),
    ("return  x", "return ", " x"),
    ("x\n\tret", "x\n\t", "ret"),
    ("x = 1\nre", "x = 1\n", "re"),
    ("", "", ""),
])
def test_heal_splits_off_the_partial_word(prefix, kept, partial):
    assert heal(prefix) == (kept, partial)
    assert kept + partial == prefix


@pytest.fixture(scope="module")
def index(base_model_path):
    from transformers import AutoTokenizer

    from engine.token_healing import TokenPrefixIndex

    tok = AutoTokenizer.from_pretrained(str(base_model_path))
    return tok, TokenPrefixIndex(tok)


@pytest.mark.model
def test_index_allows_exactly_the_tokens_that_agree(index):
    tok, idx = index
    allowed = {tok.decode([i]) for i in idx.allowed(" ite")}
    assert {" iter", " item", " it", " i", " "} <= allowed
    assert all(t.startswith(" ite") or " ite".startswith(t) for t in allowed)
    assert "ite" not in allowed and " is" not in allowed
    one = tok.encode(" it", add_special_tokens=False)
    assert len(one) == 1 and idx.consume(" ite", one[0]) == "e"
    longer = tok.encode(" iter", add_special_tokens=False)
    assert len(longer) == 1 and idx.consume(" ite", longer[0]) == ""


PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


@pytest.mark.engine
@pytest.mark.model
def test_engine_finishes_the_word_and_omits_the_healed_part(engine):
    healed = asyncio.run(engine.generate(GenerationRequest(PROMPT, 12, heal=" fibon", request_id="heal-1")))
    assert healed.text.startswith("acci("), healed.text
    assert healed.completion_tokens <= 12 and healed.prompt_tokens == engine.count_tokens(PROMPT)

    async def stream():
        return [c async for c in engine.stream(GenerationRequest(PROMPT, 12, heal=" fibon", request_id="heal-2"))]
    chunks = asyncio.run(stream())
    assert "".join(c.text for c in chunks) == healed.text
    assert chunks[-1].completion_tokens == healed.completion_tokens


@pytest.mark.engine
@pytest.mark.model
def test_healing_that_uses_the_whole_budget_ends_with_length(engine):
    # The typed word is always spelled out, even past max_tokens; then nothing more is generated.
    r = asyncio.run(engine.generate(GenerationRequest(PROMPT, 1, heal=" fibonacci", request_id="heal-3")))
    assert r.finish_reason == "length" and r.completion_tokens >= 1
    assert len(r.text) <= 2 and "\n" not in r.text, r.text
