"""Task extraction: code targets only, cursors as an editor sends them."""

import pytest

from evaluation.tasks import code_lines, extract_prediction, internal_apis, is_trivial, make_tasks

PY = '''# Copyright 2024 Example Corp.
# Licensed under the Apache License, Version 2.0
"""Module docstring
spanning lines."""

import os


def load_config(path, strict=False):
    """Load it.

    More words.
    """
    # a comment
    text = open(path).read()
    query = """SELECT *
    FROM table"""
    return parse_text(text, strict=strict)


def parse_text(text, strict):
    if strict:
        pass
    else:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines())
'''


def test_code_lines_skip_boilerplate():
    lines = PY.split("\n")
    keep = {lines[i - 1].strip() for i in code_lines(PY, "python", 6)}
    assert "import os" in keep
    assert "text = open(path).read()" in keep
    assert "return parse_text(text, strict=strict)" in keep
    for boiler in ("# Copyright 2024 Example Corp.", "# a comment", '"""Load it.', "More words.",
                   'spanning lines."""', "FROM table\"\"\"", "pass", "else:", ""):
        assert boiler not in keep, boiler


@pytest.mark.parametrize("text, trivial", [
    (")", True), ("]),", True), ("else:", True), ("continue", True), ("return", True),
    ("return x + y", False), ("x = 1", True), ("x = 10", False), ("break;", True),
])
def test_is_trivial(text, trivial):
    assert is_trivial(text, 6) == trivial


def test_code_lines_c_like_block_comments():
    src = "/*\n * Licence text here\n * more\n */\npackage main\n// note\nfunc main() {\n\tx := compute(1)\n}\n"
    lines = src.split("\n")
    keep = [lines[i - 1].strip() for i in code_lines(src, "go", 6)]
    assert keep == ["package main", "func main() {", "x := compute(1)"]


def test_internal_apis_from_python_and_patterns():
    apis = internal_apis({"a.py": PY, "b.go": "func ComputeTotal(a int) int {", "c.js": "function renderView(x) {}",
                          "bad.py": "def (:"})
    assert {"load_config", "parse_text", "ComputeTotal", "renderView"} <= apis
    assert "dict" not in apis and "open" not in apis


def test_make_tasks_kinds_targets_and_cursor():
    files = {"pkg/a.py": PY, "pkg/b.py": "from pkg.a import load_config\n\ncfg = load_config('x.ini', strict=True)\n"}
    apis = internal_apis(files)
    tasks = make_tasks(files, ["pkg/a.py", "pkg/b.py"], apis, n=50, seed=1)
    kinds = {t.kind for t in tasks}
    assert kinds == {"next_line", "rest_of_line", "api_args"}
    for t in tasks:
        lines = files[t.path].split("\n")
        line = lines[t.line - 1]
        if t.kind == "next_line":
            assert t.target == line.rstrip() and t.prefix == "\n".join(lines[: t.line - 1])
        else:
            assert t.prefix.endswith(line[: t.column]) and line[t.column:].startswith(t.target)
        # the code below the cursor's line, never the target itself
        assert t.suffix == "\n".join([""] + lines[t.line:])
        assert not is_trivial(line, 6)
    api = [t for t in tasks if t.kind == "api_args"]
    assert {(t.api, t.target) for t in api} >= {("load_config", "'x.ini', strict=True"),
                                               ("parse_text", "text, strict=strict")}


def test_make_tasks_is_seeded_and_bounded():
    files = {"a.py": PY}
    a = make_tasks(files, ["a.py"], internal_apis(files), n=5, seed=3)
    b = make_tasks(files, ["a.py"], internal_apis(files), n=5, seed=3)
    assert [t.id for t in a] == [t.id for t in b] and len(a) == 5
    with pytest.raises(ValueError):
        make_tasks(files, ["a.py"], frozenset(), n=0)


def test_make_tasks_depends_on_the_files_not_their_order():
    """`eval --resume` reuses completions only for the same tasks: the order files, held-out paths
    or internal APIs are listed in (dict and set order) must not change them."""
    files = {"a.py": PY, "b.py": PY.replace("load_config", "read_config")}
    a = make_tasks(files, ["a.py", "b.py"], internal_apis(files), n=12, seed=5)
    flipped = dict(reversed(list(files.items())))
    b = make_tasks(flipped, ["b.py", "a.py"], frozenset(sorted(internal_apis(flipped), reverse=True)), n=12, seed=5)
    assert [t.as_dict() for t in a] == [t.as_dict() for t in b] and len(a) == 12


def test_make_tasks_nothing_but_boilerplate():
    files = {"a.py": "# only a comment\n\n\"\"\"doc\"\"\"\n"}
    assert make_tasks(files, ["a.py"], frozenset(), n=10) == []


@pytest.mark.parametrize("kind, raw, expected", [
    ("next_line", "    return x\n    y = 2", "    return x"),   # what goes at the line start (completion.finish)
    ("rest_of_line", "bar(1)\nmore", "bar(1)"),
    ("api_args", "a, f(b)) + 1", "a, f(b)"),
    ("api_args", "a, b", "a, b"),
])
def test_extract_prediction(kind, raw, expected):
    from evaluation.tasks import Task

    t = Task("id", kind, "a.py", "python", 2, None, "", "", "")
    assert extract_prediction(t, raw) == expected


def test_a_next_line_task_is_a_cursor_at_its_line_start():
    from evaluation.tasks import Task

    src = "def f(x):\n    y = x\n    return y\n"
    t = next(t for t in make_tasks({"a.py": src}, ["a.py"], frozenset(), n=20, kinds=("next_line",)) if t.line == 3)
    cursor = t.cursor()
    assert (cursor.prefix, cursor.kind, cursor.opens_line) == ("def f(x):\n    y = x\n", "line_start", True)
    mid = Task("id", "rest_of_line", "a.py", "python", 2, 6, "x = 1\ny = f", "\n", "(1)")
    assert mid.cursor().kind == "mid_line"


def test_internal_apis_drop_names_of_builtin_methods():
    src = "class Store:\n    def get(self, k):\n        return 1\n\n    def fetch_row(self, k):\n        return 2\n"
    apis = internal_apis({"s.py": src})
    assert "fetch_row" in apis and "Store" in apis and "get" not in apis


def test_api_args_placeholder_arguments_are_not_targets():
    src = "def handler(x):\n    return x\n\n\nvalue = handler(...)\nother = handler(item_count)\n"
    tasks = make_tasks({"a.py": src}, ["a.py"], internal_apis({"a.py": src}), n=20, kinds=("api_args",))
    assert [t.target for t in tasks] == ["item_count"]
