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
    assert "at once." not in o.text and '        """Run it"""\n' in o.text   # a docstring cut after its doc line
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


def test_an_error_wrapped_around_a_whole_class_is_judged_by_the_errors_inside():
    # an unfinished last line: tree-sitter's recovery wraps the whole class in one error,
    # over the blanked bodies, but the error inside it is the text's own
    text = ("class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
            + "\n".join(f"    x{i} = {i}" for i in range(60)) + "\n    y = (1,\n")
    o = outline(text, "python")
    tree = parse("m.py", "python", o.text)
    assert tree.root_node.has_error and not suspect(tree, o.blanked)
    assert extract("m.py", o.text, "python", tree=tree).definitions == extract("m.py", text, "python").definitions


def test_resolution_reads_the_whole_text_when_the_outline_is_suspect():
    from retrieval.symbol_context import _request_symbols, _trees

    made = "def f():\n    x = g(\n1, 2)\n    return x\n\n\ndef h(a):\n    return a\n"
    _trees.clear()
    got = _request_symbols("", "m.py", "python", made)
    assert got.definitions == extract("m.py", made, "python").definitions


def test_no_outline_for_other_languages_or_nothing_to_blank():
    assert outline("fn f() {\n    g();\n}\n", "rust") is None
    assert outline("func f() { return }\n", "go") is None
    assert outline("import os\nX = 1\n", "python") is None


def test_the_outline_and_the_whole_text_keep_their_own_cached_trees():
    # a request whose outline is suspect is parsed both ways: the next keystroke re-parses
    # each incrementally from its own previous tree, not from the other's
    from retrieval.symbol_context import _request_symbols, _trees

    made = "def f():\n    x = g(\n1, 2)\n    return x\n\n\ndef h(a):\n    return a\n"
    _trees.clear()
    _request_symbols("", "m.py", "python", made)
    assert sorted(key[-1] for key in _trees._items) == ["", "outline"]


JAVA = '''package com.acme.pay;

import java.util.List;

/** Charges cards. */
@Service
public class Gateway extends Base implements Api {
    public static final int LIMIT = 3;
    private final Runnable hook = new Runnable() {
        public void run() {
            System.out.println("x");
        }
    };

    /** Charges a card. */
    public boolean chargeCard(String card,
                              int cents) throws IOException {
        if (cents > LIMIT) {
            return false;
        }
        String sql = """
SELECT 1
""";
        return true;
    }

    enum Mode {
        FAST("f") {
            int speed() { return 2; }
        },
        SLOW("s");
        Mode(String code) {
            this.code = code;
        }
    }

    record Point(int x, int y) {
        int sum() {
            return x + y;
        }
    }
}
'''
TS = '''import { Clock } from "./clock";

export interface Cart {
  add(sku: string): void;
}

/** Formats cents. */
export function formatCents(cents: number): string {
  const css = `
.a { color: red; }
`;
  return String(cents);
}

export const total = (items: number[]): number => {
  return items.reduce((a, b) => a + b, 0);
};

export class Shop {
  private items: string[] = [];
  handler = (e: Event) => {
    console.log(e);
  };

  constructor(private clock: Clock) {
    this.opened = clock.now();
  }

  get size(): number {
    return this.items.length;
  }

  async checkout(
    card: string,
  ): Promise<boolean> {
    if (card) {
      return true;
    }
    return false;
  }
}
'''
GO = '''package shipping

import (
	"fmt"
	"strings"
)

// Parcel is one box.
type Parcel struct {
	WeightKg float64
}

// Volume of the parcel in litres.
func (p *Parcel) Volume() float64 {
	if p.WeightKg > 0 {
		return 1
	}
	return 0
}

var usage = `
func notCode() {
}
`

func ComputeFreight(p Parcel,
	rate float64) (float64, error) {
	s := strings.TrimSpace(fmt.Sprint(p))
	return float64(len(s)) * rate, nil
}
'''


@pytest.mark.parametrize("path,language,text", [("Gateway.java", "java", JAVA), ("shop.ts", "typescript", TS),
                                                ("shop.js", "javascript", TS.split("export class")[0]
                                                 .replace(": number[]): number", ")").replace(": number): string", ")")
                                                 .replace("import { Clock } from \"./clock\";\n\n", "")
                                                 .split("export interface")[0] + "export function f(a) {\n  return a;\n}\n"),
                                                ("freight.go", "go", GO)])
def test_brace_languages_give_the_same_definitions_and_imports(path, language, text):
    short = outline(text, language)
    assert short is not None and short.text.count("\n") == text.count("\n")
    tree = parse(path, language, short.text)
    assert not tree.root_node.has_error and len(short.text) < len(text)
    whole, got = extract(path, text, language), extract(path, short.text, language, tree=tree)
    assert got.definitions == whole.definitions and got.imports == whole.imports


def test_brace_outline_keeps_types_and_constructors_blanks_function_bodies():
    o = outline(TS, "typescript").text
    assert "this.opened = clock.now();" in o                        # a constructor's fields
    assert "return this.items.length" not in o and "reduce" not in o and "console.log" not in o
    assert "add(sku: string): void;" in o                           # an interface body
    g = outline(GO, "go").text
    assert "WeightKg float64" in g and "TrimSpace" not in g and "return 1" not in g
    j = outline(JAVA, "java").text
    assert "LIMIT = 3" in j and "return x + y" not in j and "this.code = code" not in j
    assert "SELECT 1" in j   # a text block at column 0: that body is left as written


def test_a_keystroke_inside_a_body_reuses_what_was_read_off_the_outline(monkeypatch):
    import retrieval.symbol_context as sc

    text = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    sc._trees.clear()
    first = sc._request_symbols("", "m.py", "python", text)
    monkeypatch.setattr(sc, "extract", lambda *a, **k: pytest.fail("read off again"))
    typed = text.replace("return 1", "return 1 + sel")
    assert sc._request_symbols("", "m.py", "python", typed) is first
    sc._trees.clear()   # a file's first request reads it afresh
    with pytest.raises(pytest.fail.Exception):
        sc._request_symbols("", "m.py", "python", typed)


def test_a_triple_quote_of_the_other_kind_inside_a_docstring_opens_no_string():
    # libcst's `quote` property documents ``'''``: counted alone it looked like an open string,
    # and the outline blanked everything up to the next `'''` (the class below included)
    text = ('class Base:\n    def quote(self):\n        """Either ``\'``, ``\'\'\'`` or ``\\"\\"\\"``."""\n'
            '        return 1\n\n\nclass After(Base):\n    """Doc."""\n\n    size = 1\n\n'
            '    def f(self):\n        return "\'\'\'"\n')
    whole, short, _ = symbols_both_ways(text)
    assert short.definitions == whole.definitions
    assert "After" in {d.name for d in short.definitions}
