"""The request focused on what resolution at its cursor reads: a parse bounded by the
cursor's neighbourhood, the same definitions for what it keeps."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import pytest

from retrieval.chunking import parse
from retrieval.focus import MEMBER_FOCUS_LINES, focus, needed_names
from retrieval.symbols import extract

STDLIB = Path(sysconfig.get_paths()["stdlib"])

TEXT = '''"""A module."""
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acme.util import Clock


def used(a, b):
    """Used near the cursor."""
    return a + b


def unused(x):
    return x


class Other:
    def far(self):
        return 2


TABLE = [
    1,
    2,
]


class Base:
    def ping(self):
        return 1


class Mid(Base):
    pass


class Leaf(Mid):
    def __init__(self):
        self.size = 1

    def run(self):
        total = used(1, 2)
        self.
'''


def kept(text, cursor, needed, typed=""):
    near = focus(text, cursor, needed, typed)
    assert near is not None and near.text.count("\n") == text.count("\n")   # every line keeps its number
    tree = parse("m.py", "python", near.text)
    assert not tree.root_node.has_error or text.rstrip().endswith(".")   # the cursor's own `self.`
    return near, extract("m.py", near.text, "python", tree=tree)


def test_keeps_imports_used_names_the_class_around_the_cursor_and_its_bases():
    cursor = TEXT.index("self.\n") + len("self.")
    near, fs = kept(TEXT, cursor, needed_names(TEXT[:cursor].split("\n")[-12:]))
    whole = extract("m.py", TEXT, "python")
    assert fs.imports == whole.imports   # the one under `if TYPE_CHECKING:` too
    assert {d.qualname for d in fs.definitions} == {"used", "Base", "Base.ping", "Mid", "Leaf", "Leaf.__init__",
                                                     "Leaf.size", "Leaf.run"}
    assert set(fs.definitions) <= set(whole.definitions)   # byte for byte the whole text's
    assert "def unused" not in near.text and "TABLE" not in near.text and "class Other" not in near.text


def test_what_is_typed_keeps_the_names_it_starts():
    cursor = TEXT.index("self.\n")
    _, fs = kept(TEXT, cursor, set(), typed="un")
    assert "unused" in {d.name for d in fs.definitions}


def test_a_long_data_table_keeps_its_first_line_only():
    rows = "".join(f"    ({i:#x}, 'V'),\n" for i in range(3000))
    text = f"import os\n\nDATA = (\n{rows})\n\n\ndef f():\n    return DATA[0]\n"
    near, fs = kept(text, len(text) - 2, {"DATA"})
    assert len(near.text.replace("\n", "")) < 100
    assert [d for d in fs.definitions if d.name == "DATA"] == \
        [d for d in extract("m.py", text, "python").definitions if d.name == "DATA"]


def test_triple_quotes_in_a_comment_or_a_one_line_string_open_none():
    text = ('def reads(doc):\n    return doc.startswith(\'"""\')  # or """\n\n\n'
            'def other():\n    return 1\n\n\ndef last():\n    return 2\n')
    near, fs = kept(text, len(text) - 1, {"reads"})
    assert [d.name for d in fs.definitions] == ["reads", "last"]
    assert "def other" not in near.text


def test_a_decorator_over_many_lines_stays_with_its_definition():
    text = ("import pytest\n\n\n@pytest.mark.parametrize(\n    'x',\n    [\n1,\n2,\n    ],\n)\ndef test_a(x):\n"
            "    assert x\n\n\ndef test_c():\n    pass\n\n\ndef test_b():\n    pass\n")
    _, fs = kept(text, len(text) - 1, {"test_a"})
    assert [d.name for d in fs.definitions] == ["test_a", "test_b"]


def test_a_long_class_keeps_its_constructor_named_and_nearby_members():
    methods = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(MEMBER_FOCUS_LINES))
    text = ("class Big:\n    def __init__(self):\n        self.size = 0\n\n" + methods
            + "    def here(self):\n        self.m3()\n        self.\n")
    cursor = len(text) - 1
    near, fs = kept(text, cursor, {"m3"})
    got = {d.name for d in fs.definitions}
    assert {"Big", "__init__", "size", "m3", "here", "m199", "m0"} <= got   # m0: a class's first members
    assert "m100" not in got and len(near.text.replace("\n", "")) < len(text) / 2


def test_nothing_to_blank_is_none():
    assert focus("import os\n", 3, set()) is None
    assert focus("x = 1\n", 3, {"x"}) is None


@pytest.mark.parametrize("name", ["argparse.py", "pydoc.py", "typing.py", "_pyio.py", "inspect.py"])
def test_real_files_keep_every_used_definition_as_the_whole_text_reads_it(name):
    text = (STDLIB / name).read_text()
    whole = extract(name, text, "python")
    lines = text.split("\n")
    rng = random.Random(name)
    for _ in range(8):
        line = rng.randrange(50, len(lines))
        cursor = sum(len(x) + 1 for x in lines[:line])
        needed = needed_names(lines[max(0, line - 12):line + 1])
        near = focus(text, cursor, needed)
        if near is None:
            continue
        fs = extract(name, near.text, "python")
        assert set(fs.definitions) <= set(whole.definitions), line
        assert fs.imports == [i for i in whole.imports if i in fs.imports]
        top = {d.name for d in fs.definitions if d.container is None}
        assert {d.name for d in whole.definitions if d.container is None and d.name in needed} <= top, line
