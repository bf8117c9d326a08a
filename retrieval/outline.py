"""A request's text with function bodies blanked, for a cheaper parse at completion time.

Resolution at a cursor needs only what `retrieval.symbols.extract` reads: imports,
definition headers, docstrings, class bodies and the fields a constructor sets. Function
bodies are most of a file's text and most of its parse (docs/bench-retrieval.md). So bodies
are replaced by blank lines (and, in Python, a placeholder statement): every line keeps its
number, every header, docstring and constructor is kept byte for byte, so the definitions
read off the outline's parse are those of the whole text.

Python bodies are found by indentation; brace languages' (Go, Java, JavaScript, TypeScript)
by a function header's line ending in `{` and the `}` at its indentation.

The outline is a line-level reading, not a parse: where the text is not what it expects
(a body that opens a string it does not close, a header it cannot find the end of), it
leaves that part as written or gives up (None); a caller parses the whole text when the
outline's parse has an error next to a blanked body (`suspect`; `resolve` does).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from retrieval.symbols import _first_doc_line

_PY_DEF = re.compile(r"def[ \t]+([A-Za-z_]\w*)")   # a literal first: the search runs at C speed
_PY_DEF_LEAD = re.compile(r"[ \t]*(?:async[ \t]+)?")
_PY_STRING_START = re.compile(r"[rRuUbBfF]{0,2}(\"\"\"|'''|\"|')")
_PY_BLANK_LINES = re.compile(r"(?:[ \t]*+(?:#[^\n]*+)?\n)*+")
_QUOTED_TRIPLE = re.compile("'[^'\\n\\\\]*\"{3}[^'\\n\\\\]*'" + '|"[^"\\n\\\\]*\'{3}[^"\\n\\\\]*"')
_LINE_TOKENS = re.compile(r"""#|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|["']""")
_BRACE_AT_END = re.compile(r"\{[ \t]*(?=\n)")
_TYPE_HEADER = re.compile(r"\b(?:class|interface|enum|struct|record|namespace|module)\b")
_HEADER_LINES = 40       # a header longer than this is left as written
_ERROR_SPAN = 40         # lines: an error node longer than this is recovery around others
_STRINGS_PER_BODY = 20   # multi-line strings a body may hold past its indentation
_KEEP_BODY = {"__init__"}   # constructors: the fields they set are definitions


class Outline(NamedTuple):
    text: str                          # same lines as the request's text
    blanked: tuple[tuple[int, int], ...]   # 0-based first and last line of each blanked body


def outline(text: str, language: str) -> Outline | None:
    """`text` with function bodies blanked, or None where no outline applies."""
    if language == "python":
        return _python(text)
    if language in ("go", "java", "javascript", "typescript"):
        return _braces(text)
    return None


def suspect(tree, blanked) -> bool:
    """Whether the outline's parse has an error at or next to a blanked body: one the
    outline may have made (an error elsewhere is the text's own, as written)."""
    if not tree.root_node.has_error:
        return False
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        first, last = node.start_point[0], node.end_point[0]
        if (node.type == "ERROR" or node.is_missing) and last - first <= _ERROR_SPAN:
            if any(first <= e + 1 and last >= s - 1 for s, e in blanked):
                return True
        # a larger error is tree-sitter's recovery wrapping a whole class or file around an
        # error of the text's own: the errors inside it tell where
        stack.extend(c for c in node.children if c.has_error or c.is_missing or c.type == "ERROR")
    return False


class Rewrite:
    """A text rebuilt with some of its spans replaced by fillers of as many lines, and the
    0-based first and last line of each (what `suspect` judges errors against)."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 0   # line: 0-based number of the line at pos
        self.out: list[str] = []
        self.blanked: list[tuple[int, int]] = []

    def line_at(self, offset: int) -> int:
        return self.line + self.text.count("\n", self.pos, offset)

    def keep(self, end: int) -> None:
        """Everything up to `end` as written."""
        self.line = self.line_at(end)
        self.out.append(self.text[self.pos:end])
        self.pos = end

    def replace(self, start: int, end: int, filler: str, skip: int = 0, lines: int | None = None) -> None:
        """`text[start:end]` becomes `filler` (as many line breaks); of its lines, `lines` (all
        by default) from the `skip`-th count as blanked."""
        self.keep(start)
        n = self.text.count("\n", start, end)
        last = (n if lines is None else lines) - 1
        if last >= skip:
            self.blanked.append((self.line + skip, self.line + last))
        self.out.append(filler)
        self.line += n
        self.pos = end

    def result(self) -> Outline | None:
        if not self.blanked:
            return None
        return Outline("".join(self.out) + self.text[self.pos:], tuple(self.blanked))


def _python(text: str) -> Outline | None:
    rw = Rewrite(text)
    for m in _PY_DEF.finditer(text):
        if m.start() < rw.pos:
            continue   # a definition inside a body already kept or blanked
        line_start = text.rfind("\n", 0, m.start()) + 1
        if _PY_DEF_LEAD.match(text, line_start).end() != m.start():
            continue   # not a `def` statement: a word ending in "def", a string
        body_start = _py_header_end(text, m.end())
        if body_start is None:
            continue   # a one-line definition, or a header still being typed
        indent = text[line_start:m.start()]
        indent = indent[:len(indent) - len(indent.lstrip(" \t"))]
        body_end = _py_body_end(text, body_start, len(indent))
        if body_end is None:
            break   # a string the body opens is not closed: the rest is left as written
        body = text[body_start:body_end]
        if not body or body.isspace():
            continue
        if m.group(1) not in _KEEP_BODY:
            filler = _py_filler(body, indent)
            if filler is None:
                break
            # the blank lines after it aside
            rw.replace(body_start, body_end, filler, lines=body.rstrip().count("\n") + 1)
        else:   # a constructor is kept whole, and what it defines inside with it
            rw.keep(body_end)
    return rw.result()


def _braces(text: str) -> Outline | None:
    """Brace languages: a block opened at the end of a function's header (a line closing a
    parenthesis, the header's first line found by balancing them) and closed by a `}` at
    the header's own indentation loses the lines between. Class, interface, struct, enum and record bodies,
    constructors (`this.x = ...` fields) and blocks whose lines do not follow their
    indentation (a multi-line string at column 0) are left as written."""
    rw = Rewrite(text)
    for m in _BRACE_AT_END.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        if line_start < rw.pos:
            continue   # inside a block already blanked
        code = text[line_start:m.start()]
        if ")" not in code or _TYPE_HEADER.search(code) or "constructor" in code:
            continue
        header_start = _header_start(text, line_start, code.count("(") - code.count(")"))
        if header_start is None or header_start < rw.pos:
            continue
        head = text[header_start:line_start] + code
        if _TYPE_HEADER.search(head) or "constructor" in head:
            continue
        indent = head[:len(head) - len(head.lstrip(" \t"))]
        body_start = m.end() + 1
        body_end = _deeper(len(indent)).match(text, body_start).end()
        if body_end == body_start or not text.startswith(indent + "}", body_end):
            continue
        rw.replace(body_start, body_end, "\n" * text.count("\n", body_start, body_end))
    return rw.result()


def _header_start(text: str, line_start: int, depth: int) -> int | None:
    """The start of the line a header ending on the line at `line_start` begins on: up
    while its parentheses are not balanced (`depth` < 0: more closed than opened)."""
    for _ in range(_HEADER_LINES):
        if depth >= 0:
            return line_start
        if line_start == 0:
            return None
        prev = text.rfind("\n", 0, line_start - 1) + 1
        depth += text.count("(", prev, line_start) - text.count(")", prev, line_start)
        line_start = prev
    return None


@lru_cache(maxsize=64)
def _deeper(indent: int) -> re.Pattern:
    """Blank lines and lines indented more than `indent` characters."""
    return re.compile(r"(?:[ \t]{%d}[^\n]*+\n|[ \t]*+\n)*+" % (indent + 1))


def _py_body_end(text: str, start: int, indent: int) -> int | None:
    """Where the body starting at `start` under a header indented `indent` ends: its lines
    are deeper, except inside a string it opens (a template at column 0)."""
    pos = start
    for _ in range(_STRINGS_PER_BODY):
        pos = _py_body(indent).match(text, pos).end()
        quote = _open_quote(text, start, pos)
        if quote is None:
            return pos
        close = text.find(quote, pos)
        if close < 0:
            return None
        nl = text.find("\n", close)
        pos = len(text) if nl < 0 else nl + 1
    return None


def _open_quote(text: str, start: int, end: int) -> str | None:
    """The triple quote `text[start:end]` leaves open, if any. Counting comes first (a body
    with an even number of each quote leaves none open); an odd count is confirmed by
    pairing the quotes in order (`'''` inside a docstring opens nothing)."""
    for quote in ('"""', "'''"):
        n = text.count(quote, start, end)
        if n % 2:
            n -= sum(m.group().count(quote) for m in _QUOTED_TRIPLE.finditer(text, start, end))
        if n % 2:
            break
    else:
        return None
    strings = list(_triple_strings(text, start, end))
    if strings and strings[-1][1] is None:
        return text[strings[-1][0]:strings[-1][0] + 3]
    return None


def string_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each triple-quoted string of `text` (one left open ends with the text)."""
    return [(at, len(text) if close is None else close) for at, close in _triple_strings(text, 0, len(text))]


def _triple_strings(text: str, start: int, end: int):
    """(start, end or None where left open) of each triple-quoted string from `start` to
    `end`, quotes paired in order. One in a comment or a one-line string (code that reads
    docstrings: `'\"\"\"'`) opens none; an escaped one closes none."""
    pos = start
    found = {q: text.find(q, start, end) for q in ('"""', "'''")}   # str.find: a regex tries every character
    while True:
        quote = min((q for q in found if found[q] >= 0), key=found.get, default=None)
        if quote is None:
            return
        at = found[quote]
        found[quote] = text.find(quote, at + 3, end)
        if at < pos:
            continue   # inside the last string
        line_start = max(text.rfind("\n", 0, at) + 1, pos)
        if not text[line_start:at].isspace() and not _in_code(text, line_start, at):
            continue   # (a docstring's opening quote has only its indentation before it)
        close = at + 3
        while True:
            close = text.find(quote, close, end)
            if close < 0 or not _escaped(text, close):
                break
            close += 1
        if close < 0:
            yield at, None
            return
        pos = close + 3
        yield at, pos
        for q in found:
            if 0 <= found[q] < pos:
                found[q] = text.find(q, pos, end)


def _in_code(text: str, start: int, pos: int) -> bool:
    """Whether `pos` is code, `text[start:pos]` being its line so far: not after a `#`, not
    inside a one-line string."""
    for m in _LINE_TOKENS.finditer(text, start, pos):
        if len(m.group()) == 1:   # a comment, or a quote not closed before pos
            return False
    return True


def _escaped(text: str, pos: int) -> bool:
    n = 0
    while pos - n - 1 >= 0 and text[pos - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _py_header_end(text: str, start: int) -> int | None:
    """Where the body of the header starting before `start` begins (after the line ending in
    its colon, brackets balanced), or None: a one-line definition or an unfinished header."""
    depth, i = 0, start
    for _ in range(_HEADER_LINES):
        nl = text.find("\n", i)
        line = text[i:nl if nl >= 0 else len(text)]
        code = line.split("#", 1)[0] if "#" in line else line
        depth += code.count("(") + code.count("[") + code.count("{") \
            - code.count(")") - code.count("]") - code.count("}")
        if depth <= 0:
            return nl + 1 if nl >= 0 and code.rstrip().endswith(":") else None
        if nl < 0:
            return None
        i = nl + 1
    return None


@lru_cache(maxsize=64)
def _py_body(indent: int) -> re.Pattern:
    """Lines of a body under a header indented `indent` characters: deeper lines, blank lines
    and comment lines (Python lets a comment sit at any indentation)."""
    return re.compile(r"(?:[ \t]{%d}[^\n]*+(?:\n|\Z)|[ \t]*+(?:#[^\n]*+)?\n)*+" % (indent + 1))


def _py_filler(body: str, indent: str) -> str | None:
    """The body's docstring (kept: its first line is the definition's doc) or a placeholder
    statement, then as many blank lines as the body had."""
    lines = body.count("\n")
    lead = _PY_BLANK_LINES.match(body).end()   # the doc may follow comments
    lead += len(body) - lead - len(body[lead:].lstrip(" \t"))
    m = _PY_STRING_START.match(body, lead)
    if m is None:
        keep = body[:lead].rstrip(" \t") + indent + " pass"
    else:
        quote = m.group(1)
        close = body.find(quote, m.end()) if len(quote) == 3 else m.end()
        if close < 0:
            return None
        nl = body.find("\n", close)
        keep = _first_doc_lines(body, m.start(), m.end(), close, quote) or (body if nl < 0 else body[:nl])
    return keep + "\n" * (lines - keep.count("\n"))


def _first_doc_lines(body: str, start: int, opened: int, close: int, quote: str) -> str | None:
    """A long docstring cut after the line its doc is read from, closed there (most of a
    documented library's outline is otherwise its docstrings); None where the cut would
    read differently."""
    end = opened
    while True:
        nl = body.find("\n", end)
        if nl < 0 or nl >= close:
            return None   # on one line already
        if body[end:nl].strip():
            break
        end = nl + 1
    line = body[end:nl].rstrip()
    if line.endswith(("\\", '"', "'")):
        return None
    cut = body[:end] + line + quote
    if _first_doc_line(cut[start:]) != _first_doc_line(body[start:min(close + 3, start + 600)]):
        return None
    return cut
