"""codetailor.prompt_format: layout, round trip, token budget, cursor helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codetailor.errors import PromptTooLong
from codetailor.prompt_format import (FILE_SEP, REPO_NAME, SUFFIX_MARK, PromptParts, Snippet, build,
                                      cursor_parts, cut_at_suffix, parse, query_lines, render)

SOURCE = "\n".join(
    ["import os", "", "", "def load(path):", '    """Read a file."""', "    with open(path) as f:",
     "        return f.read()", "", "", "def save(path, text):", "    with open(path, 'w') as f:",
     "        f.write(text)", "", "", "def main():", "    text = load('a.txt')", "    save('b.txt', text)"]
)
SNIPS = (Snippet("lib/best.py", 10, 12, "def best():\n    return 1\n"),
         Snippet("lib/second.py", 1, 2, "X = 2"))


def words(text: str) -> int:
    """A crude counter: separators count 1, each whitespace-separated word 1."""
    return text.count(FILE_SEP) + text.count(REPO_NAME) + len(text.replace(FILE_SEP, " ").replace(REPO_NAME, " ").split())


def test_layout_puts_best_snippet_last_suffix_before_file_and_ends_at_cursor():
    prefix, suffix = cursor_parts(SOURCE, 6, 4)
    text = render(PromptParts("app/io.py", prefix, suffix, SNIPS, repo="acme"))
    assert text.startswith(f"{REPO_NAME}acme{FILE_SEP}lib/second.py:1-2\nX = 2\n{FILE_SEP}lib/best.py:10-12\n")
    assert f"{FILE_SEP}app/io.py{SUFFIX_MARK}\nwith open(path) as f:\n" in text
    assert text.endswith(f"{FILE_SEP}app/io.py\n{prefix}") and text.endswith('"""\n    ')
    assert text.index("lib/second.py") < text.index("lib/best.py") < text.index(SUFFIX_MARK)


_text = st.text(st.characters(blacklist_characters="<\r", blacklist_categories=("Cs",)), max_size=60)
_path = st.from_regex(r"[a-z][a-z0-9_/]{0,20}\.py", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(path=_path, prefix=_text, suffix=_text.map(lambda s: s.rstrip("\n")),
       snippets=st.lists(st.tuples(_path, st.integers(1, 500), st.integers(0, 50),
                                   _text.map(lambda s: s.rstrip("\n"))), max_size=4),
       repo=st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True))
def test_parse_inverts_render(path, prefix, suffix, snippets, repo):
    parts = PromptParts(path, prefix, suffix, tuple(Snippet(p, s, s + n, t) for p, s, n, t in snippets), repo)
    assert parse(render(parts)) == parts


def test_build_keeps_everything_when_it_fits():
    prefix, suffix = cursor_parts(SOURCE, 10)
    built = build(PromptParts("a.py", prefix, suffix, SNIPS), words, 1000, max_suffix_lines=3)
    assert built.dropped_snippets == 0 and built.trimmed_prefix_lines == 0
    assert built.parts.suffix == "\n".join(SOURCE.split("\n")[9:13]).rstrip("\n")  # cursor line + 3 more
    assert built.tokens == words(built.text) <= 1000


@pytest.mark.parametrize("budget", [24, 32, 40, 60, 90])
def test_build_never_exceeds_the_budget_and_keeps_the_lines_next_to_the_cursor(budget):
    prefix, suffix = cursor_parts(SOURCE, 17, 4)
    built = build(PromptParts("a.py", prefix, suffix, SNIPS), words, budget)
    assert built.tokens <= budget
    assert built.parts.prefix.endswith("    save('b.txt', text)"[:4])  # the cursor's line survives
    assert prefix.endswith(built.parts.prefix)                        # only lines far from the cursor go
    kept_prefix_tokens = words(built.parts.prefix)
    assert kept_prefix_tokens >= min(words(prefix), int((budget - 8) * 0.5)) - 2


def test_snippets_drop_before_the_prefix_share_and_in_rank_order():
    prefix = "\n".join(f"line_{i} = {i}" for i in range(40))
    big = Snippet("big.py", 1, 30, " ".join(["w"] * 50))
    small = Snippet("small.py", 1, 1, "tiny")
    built = build(PromptParts("a.py", prefix, "", (big, small)), words, 80)
    assert [s.path for s in built.parts.snippets] == ["small.py"] and built.dropped_snippets == 1
    assert built.tokens <= 80


def test_cursor_line_alone_too_long_is_a_clear_error():
    with pytest.raises(PromptTooLong, match="cursor's line"):
        build(PromptParts("a.py", "x " * 200), words, 64)


def test_cursor_parts_and_helpers():
    assert cursor_parts("a\nbc\nd", 2, 1) == ("a\nb", "c\nd")
    assert cursor_parts("a\nbc\nd", 2) == ("a", "bc\nd")
    with pytest.raises(ValueError, match="outside the file"):
        cursor_parts("a", 3)
    with pytest.raises(ValueError, match="outside line"):
        cursor_parts("ab", 1, 5)
    assert cut_at_suffix("x = 1\n    return x\nmore", "    return x\n") == "x = 1"
    assert cut_at_suffix("x = 1", "ok") == "x = 1"
    assert query_lines("a\nb\nc", 2) == "b\nc"


@pytest.mark.model
@pytest.mark.parametrize("budget", [64, 100, 160, 400])
def test_budget_holds_with_the_real_tokenizer(base_model_path, budget):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_path)
    count = lambda t: len(tok(t, add_special_tokens=False).input_ids)  # noqa: E731
    assert count(f"{REPO_NAME}{FILE_SEP}") == 2  # the separators are single tokens
    for line in (5, 9, 17):
        prefix, suffix = cursor_parts("\n".join([SOURCE] * 3), line + 17, 0)
        built = build(PromptParts("src/app.py", prefix, suffix, SNIPS), count, budget)
        assert built.tokens == count(built.text) <= budget
