"""Split, example layout, neighbours and replay mixing (tokenizer only, no training)."""

from __future__ import annotations

import random

import pytest

from codetailor.config import PromptConfig
from codetailor.prompt_format import FILE_SEP, SUFFIX_MARK, Snippet, parse, render
from codetailor.split import split_files
from training.corpus import CorpusFile, public_files
from training.examples import ExampleBuilder
from training.run import build_examples, replay_count

from tests.training.conftest import _MODULE


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    if not (tiny_llama / "tokenizer.json").is_file():
        pytest.skip("SmolLM2 tokenizer not fetched")
    return AutoTokenizer.from_pretrained(tiny_llama)


def _files(n=4):
    return [CorpusFile(f"pkg/mod{i}.py", _MODULE.format(i=i)) for i in range(n)]


def test_split_is_stable_disjoint_and_local():
    paths = [f"src/f{i}.py" for i in range(200)]
    a = split_files(paths, 7, 0.1)
    b = split_files(list(reversed(paths)), 7, 0.1)
    assert a == b
    assert set(a.train).isdisjoint(a.heldout) and set(a.train) | set(a.heldout) == set(paths)
    assert 5 <= len(a.heldout) <= 40
    # Adding files never moves an existing file to the other side.
    c = split_files(paths + [f"new/g{i}.py" for i in range(50)], 7, 0.1)
    assert set(a.heldout) <= set(c.heldout) and set(a.train) <= set(c.train)
    assert split_files(paths, 8, 0.1).heldout != a.heldout
    # Two files: one on each side.
    two = split_files(["a.py", "b.py"], 1, 0.1)
    assert len(two.heldout) == 1 and len(two.train) == 1


def test_examples_use_the_shared_prompt_layout(tokenizer):
    b = ExampleBuilder(tokenizer, PromptConfig(), seq_len=160, target_tokens=48)
    files = _files()
    exs = build_examples(b, files, "tenant", seed=3)
    assert {e.kind for e in exs} == {"line", "midline", "fim"}
    by_path = {f.path: f.text for f in files}
    for e in exs:
        prompt = tokenizer.decode(e.ids[: e.n_prompt])
        completion = tokenizer.decode(e.ids[e.n_prompt:])
        # the prompt is exactly prompt_format's rendering of its parts ...
        parts = parse(prompt)
        assert render(parts) == prompt and parts.path == e.path and parts.repo == "repo"
        # ... and its ids are the prompt tokenized alone (as serving sends it), completion after
        assert list(e.ids[: e.n_prompt]) == b.encode(prompt)
        text = by_path[e.path]
        # the prefix ends at the cursor and the completion is the code right after it
        assert parts.prefix + completion in text
        if parts.prefix:
            assert text.startswith(parts.prefix) or ("\n" + parts.prefix) in text
        if e.kind == "line" and parts.prefix:
            assert completion.startswith("\n")
        if e.kind == "fim":
            assert parts.suffix and f"{FILE_SEP}{e.path}{SUFFIX_MARK}\n" in prompt
            after = text[text.index(parts.prefix + completion) + len(parts.prefix + completion):]
            assert after.lstrip("\n").startswith(parts.suffix.split("\n")[0])
        else:
            assert parts.suffix == ""
        assert len(e.ids) <= 160 and e.n_target >= 1


def test_mid_word_cursors_are_healed_as_serving_heals_them(tokenizer):
    from codetailor.prompt_format import heal

    exs = build_examples(ExampleBuilder(tokenizer, PromptConfig(), seq_len=160, target_tokens=48), _files(), "tenant",
                         seed=3)
    plain = build_examples(ExampleBuilder(tokenizer, PromptConfig(token_healing=False), seq_len=160, target_tokens=48),
                           _files(), "tenant", seed=3)
    healed = 0
    for e, p in zip(exs, plain):
        prefix = parse(tokenizer.decode(e.ids[: e.n_prompt])).prefix
        plain_prefix = parse(tokenizer.decode(p.ids[: p.n_prompt])).prefix
        completion = tokenizer.decode(e.ids[e.n_prompt:])
        if tokenizer.decode(p.ids[p.n_prompt:]).startswith("\n"):  # a line-start cursor: as it was
            assert prefix == plain_prefix
            continue
        kept, partial = heal(plain_prefix)
        assert prefix == kept and completion.startswith(partial)   # the word moved to the completion
        healed += bool(partial)
    assert healed >= 5


def test_an_epoch_covers_every_code_line_once(tokenizer):
    b = ExampleBuilder(tokenizer, PromptConfig(), seq_len=256, target_tokens=64)
    f = _files(1)[0]
    spans = b.spans(f, random.Random(0))
    covered = [n for a, e in spans for n in range(a, e + 1)]
    assert len(covered) == len(set(covered))
    code_lines = {i + 1 for i, line in enumerate(f.text.split("\n")) if line.strip()}
    assert code_lines <= set(covered)


def test_rag_examples_place_neighbours_and_never_the_own_file(tokenizer):
    calls = []

    def neighbours(query, path):
        calls.append((query, path))
        return [Snippet(path, 1, 2, "own file"), Snippet("other/best.py", 1, 2, "def best(): pass"),
                Snippet("other/second.py", 3, 4, "def second(): pass")]

    b = ExampleBuilder(tokenizer, PromptConfig(), seq_len=400, target_tokens=32, neighbours=neighbours)
    exs = build_examples(b, _files(2), "tenant", seed=1, rag_fraction=1.0)
    rag = [e for e in exs if e.rag]
    assert calls and rag
    for e in rag:
        parts = parse(tokenizer.decode(e.ids[: e.n_prompt]))
        assert all(s.path != e.path for s in parts.snippets)
        # best-ranked snippet is placed last, nearest the file
        prompt = tokenizer.decode(e.ids[: e.n_prompt])
        if len(parts.snippets) == 2:
            assert prompt.index("other/second.py") < prompt.index("other/best.py")


def test_selection_preference_weights_examples(tokenizer):
    b = ExampleBuilder(tokenizer, PromptConfig(), seq_len=160, target_tokens=24)
    text = _MODULE.format(i=1)
    f = CorpusFile("pkg/mod1.py", text, preferred=((4, 10),))
    exs = b.file_examples(f, "tenant", random.Random(0), other_weight=0.0)
    assert exs
    for e in exs:
        parts = parse(tokenizer.decode(e.ids[: e.n_prompt]))
        first_line = parts.prefix.count("\n") + 1
        assert first_line <= 11   # every kept span touches lines 4..10


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.5])
def test_replay_mixes_at_the_asked_ratio(tokenizer, ratio):
    b = ExampleBuilder(tokenizer, PromptConfig(), seq_len=128, target_tokens=32)
    tenant = build_examples(b, _files(3), "tenant", seed=0)
    n = replay_count(len(tenant), ratio)
    public = build_examples(b, public_files()[:60], "public", seed=0, limit=n, per_file=4)
    assert len(public) == n
    share = n / (n + len(tenant))
    assert abs(share - ratio) <= 1 / (n + len(tenant))
    assert all(e.origin == "public" for e in public)
    assert replay_count(10, 0.0) == 0
