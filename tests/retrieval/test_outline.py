"""The request's outline (function bodies blanked) yields the definitions of the whole text."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from retrieval.chunking import parse
from retrieval.outline import outline, suspect
from retrieval.symbols import extract

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def symbols_both_ways(text: str, path: str = "m.py"):
    short = outline(text, "python")
    assert short is not None
    assert short.text.count("\n") == text.count("\n")   # every line keeps its number
    tree = parse(path, "python", short.text)
    assert not tree.root_node.has_error
    whole = extract(path, text, "python")
    return whole, extract(path, short.text, "python", tree=tree), short


@pytest.mark.parametrize("name", ["argparse.py", "pydoc.py", "typing.py", "_pyio.py"])
def test_real_files_give_the_same_definitions_and_imports(name):
    # pydoc: bodies holding HTML templates at column 0 and code that reads '"""';
    # _pyio: comments before docstrings; typing: decorators, nested classes, properties
    whole, short, o = symbols_both_ways((STDLIB / name).read_text())
    assert short.definitions == whole.definitions and short.imports == whole.imports
    assert len(o.text) < 0.85 * len((STDLIB / name).read_text())


def test_headers_docstrings_and_constructors_are_kept_bodies_blanked():
    text = '''import os


class Job(Base):
    """A job."""

    limit = 3

    def __init__(self, clock):
        self.clock = clock
        self.items = []

    async def run(self,
                  when: float = 0.0,   # seconds
                  ) -> "Result":
        # type: () -> None
        """Run it

        at once."""
        value = os.getenv("X")
        template = """
<html>
"""
        return value

    def one_liner(self): return 1


def helper(a: dict = {"k": ("v",)}):
    return a
'''
    whole, short, o = symbols_both_ways(text)
    assert short.definitions == whole.definitions and short.imports == whole.imports
    assert [d.doc for d in short.definitions if d.name == "run"] == ["Run it"]
    assert {"Job.clock", "Job.items", "Job.limit"} <= {d.qualname for d in short.definitions}
    assert "getenv" not in o.text and "<html>" not in o.text and "return a" not in o.text
    assert "def one_liner(self): return 1" in o.text


def test_a_string_left_open_leaves_the_rest_as_written():
    text = 'def a():\n    return 1\n\n\ndef b():\n    s = """\nnever closed\n\ndef c():\n    pass\n'
    o = outline(text, "python")
    assert o.text.startswith("def a():\n pass\n") and o.text.endswith(text[text.index("def b"):])


def test_an_error_the_outline_made_is_suspect_one_of_the_text_is_not():
    # a call continued at column 0 inside a body: the outline cuts the body there
    made = "def f():\n    x = g(\n1, 2)\n    return x\n\n\ndef h(a):\n    return a\n"
    o = outline(made, "python")
    assert suspect(parse("m.py", "python", o.text), o.blanked)
    # the text's own error (an unfinished line at top level, far from any body) is not
    own = "def f():\n    return 1\n\n\nx = [1,\n"
    o = outline(own, "python")
    tree = parse("m.py", "python", o.text)
    assert tree.root_node.has_error and not suspect(tree, o.blanked)


def test_resolution_reads_the_whole_text_when_the_outline_is_suspect():
    from retrieval.symbol_context import _request_symbols, _trees

    made = "def f():\n    x = g(\n1, 2)\n    return x\n\n\ndef h(a):\n    return a\n"
    _trees.clear()
    got = _request_symbols("", "m.py", "python", made)
    assert got.definitions == extract("m.py", made, "python").definitions


def test_no_outline_for_other_languages_or_nothing_to_blank():
    assert outline("func f() {\n\treturn\n}\n", "go") is None
    assert outline("import os\nX = 1\n", "python") is None


def test_the_outline_and_the_whole_text_keep_their_own_cached_trees():
    # a request whose outline is suspect is parsed both ways: the next keystroke re-parses
    # each incrementally from its own previous tree, not from the other's
    from retrieval.symbol_context import _request_symbols, _trees

    made = "def f():\n    x = g(\n1, 2)\n    return x\n\n\ndef h(a):\n    return a\n"
    _trees.clear()
    _request_symbols("", "m.py", "python", made)
    assert sorted(key[-1] for key in _trees._items) == ["", "outline"]
