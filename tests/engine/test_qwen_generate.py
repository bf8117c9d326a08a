"""Qwen2.5-Coder-0.5B through the real vLLM engine in its native FIM template.

The converted model is cached outside the clone (`codetailor model fetch qwen2.5-coder-0.5b` with
CODETAILOR_HOME at $CODETAILOR_MODEL_CACHE, default ~/.cache/codetailor/home); without it these
tests skip. Its own engine: float32, no LoRA, a small KV cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from codetailor.prompt_format import PromptParts, build, cursor_parts
from engine.protocol import GenerationRequest

pytestmark = [pytest.mark.engine, pytest.mark.model]
CACHE_HOME = Path(os.environ.get("CODETAILOR_MODEL_CACHE", Path.home() / ".cache" / "codetailor" / "home"))
# The body of add() is what is missing: line 2 holds only its indentation (or a partial word).
SOURCE = "def add(a, b):\n    {}\n\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    from codetailor.config import EngineConfig, load_settings
    from codetailor.model import prompt_template
    from engine.vllm_engine import VllmEngine

    path = CACHE_HOME / "models" / "qwen2.5-coder-0.5b"
    if not (path / "codetailor-model.json").is_file():
        pytest.skip(f"qwen2.5-coder-0.5b is not fetched under {CACHE_HOME} (CODETAILOR_MODEL_CACHE)")
    home = tmp_path_factory.mktemp("qwen-gen-home")
    settings = load_settings(home=home, model={"base": "qwen2.5-coder-0.5b"}, prompt={"template": "native"})
    template = prompt_template(settings, path)
    engine = VllmEngine.start(EngineConfig(dtype="float32", max_model_len=1024, enable_lora=False, kv_cache_gib=1,
                                           max_num_seqs=8), path, home=home)
    yield engine, template
    engine.close()


def _complete(engine, template, typed, *, heal=True, stops=True, max_tokens=24):
    prefix, suffix = cursor_parts(SOURCE.format(typed), 2, 4 + len(typed))
    partial = ""
    if heal:
        prefix, partial = template.heal(prefix)
    built = build(PromptParts("calc.py", prefix, suffix), engine.count_tokens, 512, template=template)
    req = GenerationRequest(built.text, max_tokens, heal=partial,
                            stop_token_ids=template.stop_token_ids if stops else ())
    return built, partial, asyncio.run(engine.generate(req))


def test_native_fim_fills_the_middle(qwen):
    # The suffix ends with a newline, as file text does: without it the model reads the suffix as
    # unfinished and continues it ('print(add(3, 4))...') instead of filling the middle.
    engine, template = qwen
    built, _, r = _complete(engine, template, "", heal=False)
    assert built.text.endswith("<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\n\nprint(add(1, 2))\n<|fim_middle|>")
    assert r.text.strip().startswith("return a + b"), r.text


@pytest.mark.xfail(strict=True, reason="the 0.5B Instruct fills the middle but then writes on (the suffix's lines, "
                   "then prose) with no family token in 24; its completions end where they start to repeat the "
                   "code after the cursor (codetailor/completion.py) or at max_tokens")
def test_native_fim_stops_at_a_family_token(qwen):
    engine, template = qwen
    _, _, r = _complete(engine, template, "", heal=False)
    # Without the template's stop ids the model writes on past the middle; greedy, so the stopped
    # completion is where the free one emitted a family token (not shown in the text).
    _, _, free = _complete(engine, template, "", heal=False, stops=False)
    assert r.finish_reason == "stop" and "<|" not in r.text
    assert free.text.startswith(r.text) and free.completion_tokens > r.completion_tokens


def test_token_healing_in_the_fim_template(qwen):
    engine, template = qwen
    built, partial, r = _complete(engine, template, "ret")  # "    ret|"
    assert partial == " ret" and "ret<|fim_suffix|>" not in built.text
    assert (partial + r.text).startswith(" return a + b"), r.text
