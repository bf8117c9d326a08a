"""Prompt templates per family: layouts, round trips, budgets, healing, stop tokens, resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codetailor.errors import ConfigError
from codetailor.prompt_format import (TEMPLATES, TEXT, PromptParts, Snippet, build, cursor_parts, family_from_tokens,
                                      parse, render, template_for)

QWEN = template_for("qwen2.5-coder", "native")
QWEN_TEXT = template_for("qwen2.5-coder", "text")
SMOL = template_for("smollm2")
SNIPS = (Snippet("lib/best.py", 10, 12, "def best():\n    return 1\n"), Snippet("lib/second.py", 1, 2, "X = 2"))
SOURCE = "import os\n\ndef load(path):\n    with open(path) as f:\n        return f.read()\n\nprint(load('x'))"
QWEN_MODEL = Path(os.environ.get("CODETAILOR_MODEL_CACHE", Path.home() / ".cache" / "codetailor" / "home")) \
    / "models" / "qwen2.5-coder-0.5b"


def test_qwen_native_layout_puts_snippets_in_repository_tokens_and_the_suffix_after_the_prefix():
    prefix, suffix = cursor_parts(SOURCE, 4, 9)
    text = render(PromptParts("app/io.py", prefix, suffix, SNIPS, repo="acme"), QWEN)
    assert text == ("<|repo_name|>acme\n"
                    "<|file_sep|>lib/second.py:1-2\nX = 2\n"
                    "<|file_sep|>lib/best.py:10-12\ndef best():\n    return 1\n"
                    "<|file_sep|>app/io.py\n<|fim_prefix|>" + prefix + "<|fim_suffix|>" + suffix + "\n<|fim_middle|>")
    assert "(after cursor)" not in text and "<repo_name>" not in text


def test_smollm2_keeps_the_text_layout_and_auto_picks_each_familys_default():
    parts = PromptParts("a.py", "x = 1\ny", "z", SNIPS)
    assert render(parts, SMOL) == render(parts, TEXT) == render(parts)
    assert template_for("smollm2", "auto") is SMOL and SMOL.name == "smollm2/text"
    assert template_for("qwen2.5-coder", "auto").family == "qwen2.5-coder"
    with pytest.raises(ValueError, match="smollm2 family has no 'native' prompt template"):
        template_for("smollm2", "native")


_text = st.text(st.characters(blacklist_characters="<\r", blacklist_categories=("Cs",)), max_size=60)
_path = st.from_regex(r"[a-z][a-z0-9_/]{0,20}\.py", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(path=_path, prefix=_text, suffix=_text, template=st.sampled_from(sorted(TEMPLATES.values(), key=str)),
       snippets=st.lists(st.tuples(_path, st.integers(1, 500), st.integers(0, 50),
                                   _text.map(lambda s: s.rstrip("\n"))), max_size=4),
       repo=st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True))
def test_parse_inverts_render_in_every_template(path, prefix, suffix, template, snippets, repo):
    if not template.is_fim:
        suffix = suffix.rstrip("\n")  # the text layout's suffix pseudo-file ends at its last line
    parts = PromptParts(path, prefix, suffix, tuple(Snippet(p, s, s + n, t) for p, s, n, t in snippets), repo)
    assert parse(render(parts, template), template) == parts


def _words(text: str) -> int:
    """A crude counter where each special token counts 1 and each word 1."""
    n = 0
    for tok in ("<|repo_name|>", "<|file_sep|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"):
        n += text.count(tok)
        text = text.replace(tok, " ")
    return n + len(text.split())


@pytest.mark.parametrize("budget", [20, 28, 40, 80, 400])
def test_fim_build_stays_within_the_budget_and_ends_at_the_middle_token(budget):
    prefix, suffix = cursor_parts("\n".join([SOURCE] * 4), 12, 8)
    built = build(PromptParts("src/app.py", prefix, suffix, SNIPS), _words, budget, template=QWEN)
    assert built.tokens == _words(built.text) <= budget
    assert built.text.endswith("<|fim_middle|>") and built.text.count("<|fim_prefix|>") == 1
    back = parse(built.text, QWEN)
    assert (back.prefix, back.suffix) == (built.parts.prefix, built.parts.suffix)
    assert [s.path for s in back.snippets] == [s.path for s in built.parts.snippets]
    assert prefix.endswith(built.parts.prefix)


def test_healing_takes_the_partial_word_off_the_prefix_in_either_layout():
    prefix, suffix = cursor_parts(SOURCE, 4, 13)  # "    with open|(path) ..." -> inside "open"
    prefix = prefix[:-2]                          # "    with op"
    for template in (SMOL, QWEN):
        kept, partial = template.heal(prefix)
        assert (kept, partial) == (prefix[: -len(" op")], " op")
        text = render(PromptParts("a.py", kept, suffix), template)
        assert text.endswith(("    with<|fim_suffix|>" + suffix + "\n<|fim_middle|>") if template.is_fim else "    with")


def test_family_from_tokens():
    assert family_from_tokens(["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>",
                               "<|file_sep|>", "<|endoftext|>"]) == "qwen2.5-coder"
    assert family_from_tokens(["<repo_name>", "<file_sep>", "<|endoftext|>"]) == "smollm2"
    assert family_from_tokens(["<|endoftext|>", "<s>"]) is None


def _checkpoint(root: Path, tokens: list[str]) -> Path:
    d = root / "ckpt"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "tokenizer.json").write_text(json.dumps(
        {"added_tokens": [{"id": 1000 + i, "content": t, "special": True} for i, t in enumerate(tokens)]}))
    return d


QWEN_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
               "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]


def test_a_local_checkpoint_gets_its_familys_template_and_stop_ids(tmp_path):
    from codetailor.config import load_settings
    from codetailor.model import prompt_template

    ckpt = _checkpoint(tmp_path, QWEN_TOKENS)
    auto = prompt_template(load_settings(home=tmp_path / "h", model={"base": str(ckpt)}))
    assert auto.family == "qwen2.5-coder" and auto.stop_token_ids == tuple(range(1000, 1009))
    native = prompt_template(load_settings(home=tmp_path / "h", model={"base": str(ckpt)},
                                           prompt={"template": "native"}))
    assert native.name == "qwen2.5-coder/native" and native.is_fim


def test_a_checkpoint_whose_tokenizer_no_template_fits_is_refused(tmp_path):
    from codetailor.config import load_settings
    from codetailor.model import prompt_template

    ckpt = _checkpoint(tmp_path, ["<|endoftext|>", "<s>"])
    with pytest.raises(ConfigError, match="cannot choose a prompt template for .*ckpt"):
        prompt_template(load_settings(home=tmp_path / "h", model={"base": str(ckpt)}))


def test_native_on_smollm2_is_a_config_error(tmp_path):
    from codetailor.config import load_settings
    from codetailor.model import prompt_template

    ckpt = _checkpoint(tmp_path, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>"])
    with pytest.raises(ConfigError, match="prompt.template: the smollm2 family has no 'native'"):
        prompt_template(load_settings(home=tmp_path / "h", model={"base": str(ckpt)}, prompt={"template": "native"}))
    smol = prompt_template(load_settings(home=tmp_path / "h", model={"base": str(ckpt)}))
    assert smol.stop_token_ids == (1000, 1002, 1003, 1004)  # <|endoftext|> <|im_end|> <repo_name> <file_sep>


def test_the_engine_passes_stop_token_ids_to_vllm():
    pytest.importorskip("vllm")
    from engine.protocol import GenerationRequest
    from engine.vllm_engine import VllmEngine

    params = VllmEngine._params(None, GenerationRequest("x", 4, stop_token_ids=(151643, 151664)), delta=False)
    assert list(params.stop_token_ids) == [151643, 151664]
    assert not VllmEngine._params(None, GenerationRequest("x", 4), delta=False).stop_token_ids


# -- the real tokenizers (skipped when the model is not fetched) ------------------------------


@pytest.mark.model
def test_smollm2_stop_ids_with_its_real_tokenizer(base_model_path, tmp_path):
    from codetailor.config import load_settings
    from codetailor.model import prompt_template

    t = prompt_template(load_settings(home=tmp_path), base_model_path)
    assert t.name == "smollm2/text" and t.stop_token_ids == (0, 2, 3, 5)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    if not (QWEN_MODEL / "codetailor-model.json").is_file():
        pytest.skip(f"qwen2.5-coder-0.5b not fetched at {QWEN_MODEL} (CODETAILOR_MODEL_CACHE)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN_MODEL)


@pytest.mark.model
def test_qwen_template_tokens_are_single_tokens_with_the_known_ids(qwen_tokenizer, tmp_path):
    from codetailor.config import load_settings
    from codetailor.model import prompt_template

    settings = load_settings(home=tmp_path, model={"base": "qwen2.5-coder-0.5b"}, prompt={"template": "native"})
    t = prompt_template(settings, QWEN_MODEL)
    assert dict(zip(t.stop_tokens, t.stop_token_ids)) == {
        "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|fim_prefix|>": 151659,
        "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661, "<|fim_pad|>": 151662, "<|repo_name|>": 151663,
        "<|file_sep|>": 151664}
    for tok in (*t.fim, t.repo_name, t.file_sep):
        assert qwen_tokenizer(tok, add_special_tokens=False).input_ids == [qwen_tokenizer.convert_tokens_to_ids(tok)]
    count = lambda s: len(qwen_tokenizer(s, add_special_tokens=False).input_ids)  # noqa: E731
    prefix, suffix = cursor_parts("\n".join([SOURCE] * 5), 18, 8)
    for budget in (48, 96, 400):
        built = build(PromptParts("src/app.py", prefix, suffix, SNIPS), count, budget, template=t)
        assert built.tokens == count(built.text) <= budget
