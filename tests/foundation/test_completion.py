"""The completion module: cursor kinds, the budget rule, the line-start rule, and a stream that
sends exactly the whole completion's text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codetailor.completion import Cursor, Finished, infer_kind, prompt, prompt_budget
from codetailor.config import PromptConfig
from codetailor.prompt_format import cut_at_suffix, template_for

CFG = PromptConfig()
SOURCE = "def f(x):\n    y = x\n    return y\n\nprint(f(1))"


def words(text: str) -> int:
    return len(text.replace("<", " <").split())


def _prompt(cursor, budget=200, cfg=CFG, template=template_for("smollm2")):
    return prompt(cursor, (), count=words, budget=budget, prompt_cfg=cfg, template=template)


@pytest.mark.parametrize("prefix, kind", [
    ("def f():\n    return 1\n", "line_start"),   # an editor at a line start
    ("def f():\n    ret", "mid_line"),
    ("def f():\n    ", "mid_line"),                # indentation typed
    ("\n", "mid_line"),                            # nothing before: sent as it is
    ("", "mid_line"),
])
def test_an_unset_kind_is_inferred_from_the_prefix(prefix, kind):
    assert infer_kind(prefix) == kind and Cursor(prefix).resolved_kind == kind


def test_a_line_start_prompt_ends_at_the_previous_line_and_drops_the_models_first_line():
    p = _prompt(Cursor("def f(x):\n    y = x\n", "    return y", "m.py", "line_start"))
    assert p.text.endswith("<file_sep>m.py\ndef f(x):\n    y = x") and p.heal == "" and p.opens_line
    assert p.finish("\n    return y + 1\n").text == "    return y + 1\n"   # it opened the line itself
    assert p.finish("  # done\n    z = 2").text == "    z = 2"              # finished the line above first
    assert p.finish("never a newline").text == ""
    assert p.target("    z = 2") == "\n    z = 2"


def test_a_mid_line_cursor_is_healed_and_its_completion_used_as_is():
    p = _prompt(Cursor("def f(x):\n    ret", "\nprint(1)", "m.py"))
    assert p.heal == " ret" and p.text.endswith("\ndef f(x):\n   ") and not p.opens_line
    assert p.finish("urn x\nmore").text == "urn x\nmore"
    assert p.target("urn x") == " return x"
    unhealed = _prompt(Cursor("def f(x):\n    ret", path="m.py"), cfg=PromptConfig(token_healing=False))
    assert unhealed.heal == "" and unhealed.text.endswith("    ret")


def test_an_explicit_kind_overrides_the_inference():
    mid = _prompt(Cursor("x = 1\n", kind="mid_line"))
    assert not mid.opens_line and mid.text.endswith("x = 1\n")
    first = _prompt(Cursor("", "import os", kind="line_start"))   # the file's first line: no line above
    assert not first.opens_line and first.finish("import sys").text == "import sys"
    with pytest.raises(ValueError, match="line start needs a prefix that is empty or ends with a newline"):
        Cursor("x = 1", kind="line_start")
    with pytest.raises(ValueError, match="unknown cursor kind"):
        Cursor("x", kind="explicit")


def test_a_cursor_in_a_file_is_the_editors_text_before_it():
    c = Cursor.in_file(SOURCE, 3, path="m.py")
    assert (c.prefix, c.kind) == ("def f(x):\n    y = x\n", "line_start") and c.suffix.startswith("    return y")
    assert Cursor.in_file(SOURCE, 3, 0).prefix == c.prefix
    assert Cursor.in_file(SOURCE, 1).prefix == "" and not Cursor.in_file(SOURCE, 1).opens_line
    m = Cursor.in_file(SOURCE, 2, 6)
    assert (m.prefix, m.suffix, m.kind) == ("def f(x):\n    y ", "= x\n    return y\n\nprint(f(1))", "mid_line")


def test_the_budget_leaves_the_completion_its_room():
    assert prompt_budget(2048, 4096, 64) == 2048
    assert prompt_budget(2048, 512, 100) == 412


def test_the_whole_prompts_count_is_what_must_fit():
    """A counter under which the pieces measured apart undercount the whole: the prompt is rebuilt
    smaller until the whole fits (the budget is a limit on what the engine sees)."""
    def merged(text):   # every newline costs one token more in the whole than in the pieces
        return words(text) + (text.count("\n") if len(text) > 40 else 0)
    long = Cursor("\n".join(f"v{i} = {i}" for i in range(60)) + "\nx = ", path="m.py")
    p = prompt(long, (), count=merged, budget=60, prompt_cfg=CFG, template=template_for("smollm2"))
    assert p.tokens == merged(p.text) <= 60


def test_a_completion_that_repeats_the_suffix_is_cut():
    p = _prompt(Cursor("def f():\n    x = ", "\n    return x\n", "m.py"))
    assert p.finish("1\n    y = 2\n    return x\nmore") == Finished("1\n    y = 2", True)
    assert p.finish("1\n    y = 2") == Finished("1\n    y = 2", False)


_pieces = st.lists(st.sampled_from(["a", " ", "\n", "return x", "retur", "n x", "  ", "\t", "b\n", "x"]),
                   max_size=25).map("".join)


@settings(max_examples=400, deadline=None)
@given(raw=_pieces, suffix=st.sampled_from(["", "return x", "\n    return x\n", "ab", "\n\nreturn xy"]),
       prefix=st.sampled_from(["def f():\n", "def f():\n    y = ", "x", ""]),
       cuts=st.lists(st.integers(0, 200), max_size=12))
def test_any_chunking_of_a_stream_sends_the_whole_completions_text(raw, suffix, prefix, cuts):
    p = _prompt(Cursor(prefix, suffix, "m.py"))
    whole = p.finish(raw).text
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    stream, sent, stopped = p.stream(), "", False
    for a, b in zip(bounds, bounds[1:]):
        out, stopped = stream.feed(raw[a:b])
        assert whole.startswith(sent + out)   # never a character that the whole text lacks
        sent += out
        if stopped:
            break
    sent += stream.close()
    assert sent == whole
    assert not stopped or p.finish(raw).cut


@pytest.mark.parametrize("full,suffix", [
    ("a + b\n    x = 1\nreturn foo(x)\nzzz", "return foo(x)\n"),
    ("abc", "def foo"), ("x\ny\n", "zzzz\n"), ("x\n", ""), ("\n    pass\n\ndef g():", "def g():\n"),
])
@pytest.mark.parametrize("step", [1, 2, 5])
def test_a_stream_stops_where_the_unary_cut_does(full, suffix, step):
    p = _prompt(Cursor("y = ", suffix, "m.py", "mid_line"), cfg=PromptConfig(token_healing=False))
    s, out, cut = p.stream(), "", False
    for i in range(0, len(full), step):
        o, cut = s.feed(full[i:i + step])
        out += o
        if cut:
            break
    out += s.close()
    assert out == cut_at_suffix(full, suffix)
    assert not cut or cut_at_suffix(full, suffix) != full   # a cut in the last line shows only at close


def test_healing_keeps_a_final_newline():
    from codetailor.prompt_format import heal

    assert heal("x = 1\n") == ("x = 1\n", "") and heal("x = val") == ("x =", " val")


@pytest.mark.parametrize("cursor", [Cursor("def f(x):\n    y = x\n", "z"), Cursor("def f(x):\n    ret"), Cursor("")])
def test_the_lead_is_what_the_prompt_expects_before_the_insertion(cursor):
    from codetailor.completion import lead

    p = _prompt(cursor)
    assert p.target("X") == lead(cursor, CFG, template_for("smollm2")) + "X"
