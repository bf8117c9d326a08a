"""Packed window examples: coverage, layout, the cursor-example share, config (tokenizer only)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from codetailor.config import PromptConfig, TrainingConfig, load_settings
from codetailor.errors import ConfigError
from codetailor.prompt_format import FILE_SEP, REPO_NAME, PromptParts, Snippet, build, parse, render
from training.corpus import CorpusFile, public_files
from training.examples import WINDOW, ExampleBuilder
from training.packing import window_bounds
from training.run import build_examples, example_builder, replay_examples

from tests.training.conftest import _MODULE


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    if not (tiny_llama / "tokenizer.json").is_file():
        pytest.skip("SmolLM2 tokenizer not fetched")
    return AutoTokenizer.from_pretrained(tiny_llama)


def _files():
    # One file of a few windows, one of many, one that opens with indentation and blank lines.
    return [CorpusFile("pkg/mod1.py", _MODULE.format(i=1)),
            CorpusFile("pkg/long/deep/module_name.py", "".join(_MODULE.format(i=i) for i in range(6))),
            CorpusFile("pkg/odd.py", "\n\n    x = 1\n\tyield x  # é ü 中文\n")]


def _packed(tok, seq_len=96, context=32, cursor_fraction=0.0, **kw):
    return ExampleBuilder(tok, PromptConfig(), seq_len, 48, packing=True, window_context=context,
                          cursor_fraction=cursor_fraction, **kw)


def test_plain_cursor_layout_is_header_then_prefix():
    # Windows rely on this: without snippets or suffix a prompt is the header, then the prefix.
    count = len
    for prefix in ("", "import os\nx = 1", "def f(:"):
        text = build(PromptParts("a/b.py", prefix), count, 10_000).text
        assert text == f"{REPO_NAME}repo{FILE_SEP}a/b.py\n{prefix}" == render(PromptParts("a/b.py", prefix))
        assert parse(text) == PromptParts("a/b.py", prefix)


@pytest.mark.parametrize("n,room,context", [(0, 50, 10), (1, 50, 10), (50, 50, 10), (51, 50, 10),
                                            (1000, 86, 32), (997, 7, 64), (300, 1, 0)])
def test_window_bounds_tile_the_file(n, room, context):
    bounds = window_bounds(n, room, context)
    targets = [t for _, a, b in bounds for t in range(a, b)]
    assert targets == list(range(n))
    for i, (c, a, b) in enumerate(bounds):
        assert b > a and (b - c) <= room and c <= a
        assert c == a if i == 0 else a - c == min(context, room // 2)


def test_windows_cover_every_file_token_once(tokenizer):
    b = _packed(tokenizer)
    for f in _files():
        exs = b.file_examples(f, "tenant", random.Random(0))
        assert exs and {e.kind for e in exs} == {WINDOW} and not any(e.rag for e in exs)
        file_ids = b.encode(f.text)
        head = b.encode(render(PromptParts(f.path, "")))
        covered = []
        for i, e in enumerate(exs):
            assert len(e.ids) <= 96 and e.n_target >= 1 and e.path == f.path and e.origin == "tenant"
            # the prompt opens with exactly the header the shared prompt format renders ...
            assert list(e.ids[: len(head)]) == head
            # ... then file tokens right before the targets: none in the first window, the context after
            context = list(e.ids[len(head): e.n_prompt])
            start = len(covered)
            assert len(context) == (0 if i == 0 else min(32, start))
            assert context == file_ids[start - len(context): start]
            covered.extend(e.ids[e.n_prompt:])
        # the loss positions, in order, are the file's tokens: each one exactly once
        assert covered == file_ids


def test_a_long_path_shrinks_the_context_not_the_coverage(tokenizer):
    b = _packed(tokenizer, seq_len=64, context=40)
    f = CorpusFile("a/" + "very_long_directory_name/" * 6 + "m.py", _MODULE.format(i=2))
    exs = b.file_examples(f, "tenant", random.Random(0))
    assert all(len(e.ids) <= 64 for e in exs)
    assert [t for e in exs for t in e.ids[e.n_prompt:]] == b.encode(f.text)


def test_packing_off_builds_todays_examples(tokenizer, tmp_path):
    files = _files()[:2]
    s = load_settings(home=tmp_path, training={"seq_len": 160, "target_tokens": 48, "packing": False})
    legacy = build_examples(ExampleBuilder(tokenizer, s.prompt, 160, 48), files, "tenant", seed=3)
    off = build_examples(example_builder(tokenizer, s), files, "tenant", seed=3)
    assert off == legacy and {e.kind for e in off} == {"line", "midline", "fim"}
    # Held-out losses are measured on these unpacked cursor examples whatever the config says.
    on = load_settings(home=tmp_path, training={"seq_len": 160, "target_tokens": 48})
    assert example_builder(tokenizer, on).packing and not example_builder(tokenizer, on, packing=False).packing


def test_cursor_fraction_adds_cursor_examples_to_the_windows(tokenizer):
    f = _files()[1]
    only = _packed(tokenizer, cursor_fraction=0.0).file_examples(f, "tenant", random.Random(5))
    assert only and {e.kind for e in only} == {WINDOW}
    b = _packed(tokenizer, cursor_fraction=1.0)
    every = b.file_examples(f, "tenant", random.Random(5))
    windows = [e for e in every if e.kind == WINDOW]
    cursors = [e for e in every if e.kind != WINDOW]
    assert windows == only
    # every span got its cursor example (the rng draws the spans first, as file_examples does)
    rng = random.Random(5)
    b.windows(f, "tenant", rng)
    assert len(cursors) == len(b.spans(f, rng))
    # without neighbours they show what windows cannot: the code after the cursor
    assert {e.kind for e in cursors} <= {"fim", "line", "midline"}
    assert sum(e.kind == "fim" for e in cursors) >= 0.8 * len(cursors)
    assert all(len(e.ids) <= 96 for e in every)
    some = _packed(tokenizer, cursor_fraction=0.3).file_examples(f, "tenant", random.Random(5))
    assert 0 < sum(e.kind != WINDOW for e in some) < len(cursors)


def test_rag_cursor_examples_with_packing(tokenizer):
    def neighbours(query, path):
        return [Snippet("other/best.py", 1, 2, "def best(): pass")]

    b = _packed(tokenizer, seq_len=256, context=64, cursor_fraction=1.0, neighbours=neighbours)
    exs = b.file_examples(_files()[1], "tenant", random.Random(0), rag_fraction=1.0)
    cursors = [e for e in exs if e.kind != WINDOW]
    assert cursors and sum(not e.rag for e in cursors) <= 1     # the file's first line has no query
    assert {e.kind for e in cursors} >= {"line", "fim"}     # neighbours go with every kind
    assert not any(e.rag for e in exs if e.kind == WINDOW)


def test_windows_keep_the_selection_preference(tokenizer):
    text = "".join(_MODULE.format(i=i) for i in range(4))
    b = _packed(tokenizer)
    everything = b.file_examples(CorpusFile("pkg/all.py", text), "tenant", random.Random(0))
    kept = b.file_examples(CorpusFile("pkg/all.py", text, preferred=((30, 40),)), "tenant", random.Random(0),
                           other_weight=0.0)
    file_ids, start, touching = b.encode(text), 0, []
    for e in everything:
        end = start + e.n_target
        first = b.tok.decode(file_ids[:start]).count("\n") + 1
        last = b.tok.decode(file_ids[:end])[:-1].count("\n") + 1
        if first <= 40 and last >= 30:
            touching.append(e)
        start = end
    # exactly the windows whose target lines touch the preferred range survive
    assert kept == touching and 0 < len(kept) < len(everything)


def test_packed_replay_holds_the_ratio_in_target_tokens(tokenizer):
    b = _packed(tokenizer, seq_len=128, cursor_fraction=0.2)
    tenant = build_examples(b, _files(), "tenant", seed=0)
    public = replay_examples(b, tenant, public_files()[:60], 0.2, seed=0)
    assert public and all(e.origin == "public" for e in public)
    assert {e.kind for e in public} & {WINDOW}
    pub, ten = sum(e.n_target for e in public), sum(e.n_target for e in tenant)
    biggest = max(e.n_target for e in public)
    assert abs(pub / (pub + ten) - 0.2) <= biggest / (pub + ten)
    assert replay_examples(b, tenant, public_files()[:5], 0.0, seed=0) == []


def test_window_context_must_leave_room_for_targets():
    assert TrainingConfig().packing and TrainingConfig().window_context == 64
    TrainingConfig(seq_len=96, window_context=64)
    with pytest.raises(ValidationError, match="window_context"):
        TrainingConfig(seq_len=96, window_context=80)
    with pytest.raises(ConfigError, match="window_context"):
        load_settings(training={"seq_len": 64})
    with pytest.raises(ValidationError):
        TrainingConfig(cursor_fraction=1.5)
