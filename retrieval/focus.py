"""The part of a Python request's text that resolution at its cursor reads, so that a file's
first request costs what the neighbourhood of its cursor costs, not what the file does.

Resolution reads off the request's own definitions only: its imports, the top-level
names used near the cursor or starting with what is being typed, the classes of the
receivers there, the class around the cursor (its members and bases) and that class's
last definition above the cursor. A 2,000-line file is mostly other things: module-level
data tables, helpers the cursor does not use, classes it is not in. So the text's
top-level statements (column-0 lines outside triple-quoted strings) are kept when one of
these holds, and blanked otherwise; every line keeps its number:

- an import, or a compound statement (`if TYPE_CHECKING:`, `try: import ...`) that holds
  one, is short or defines a needed name;
- a definition or assignment of a name in `needed` (what the resolver reads: the names of
  the last lines and the receivers' classes) or starting with the identifier being typed,
  and the local bases of a class kept;
- the definition the cursor is in, and the last class starting above the cursor's line.

A long literal kept keeps its first line (a definition's signature), its brackets closed
on the next. A kept class of more than `MEMBER_FOCUS_LINES` lines is focused the same way
at its members' indentation (a run of members blanked leaves a `pass`): its constructor
(the fields it sets), its first `MEMBER_HEAD` members, members named in `needed` or
starting with what is typed, and those within `MEMBER_WINDOW` lines of the cursor stay.

Like the outline (retrieval/outline.py), this is a line-level reading: a column-0 line
inside a bracket it does not see open splits a statement, and the parse then shows an
error next to a blanked part, which `retrieval.outline.suspect` tells the caller.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache
from typing import NamedTuple

from retrieval.outline import Outline, Rewrite, string_spans

MEMBER_FOCUS_LINES = 200   # a kept class longer than this keeps only the members the cursor may use
MEMBER_WINDOW = 30         # lines either side of the cursor whose members a focused class keeps
MEMBER_HEAD = 20           # a focused class keeps its first members (`self.` lists those first)
BASE_DEPTH = 4            # generations of local base classes kept for a kept class
HEAD_LINES = 20           # a kept assignment longer than this keeps its first line (the value closed)
COMPOUND_LINES = 30        # a compound top-level statement this short is kept whatever it holds

_IMPORT_INSIDE = re.compile(r"^[ \t]*(?:import|from)[ \t]", re.M)
_DEFINED_INSIDE = re.compile(r"^[ \t]*(?:(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)|([A-Za-z_]\w*)[ \t]*=(?!=))",
                             re.M)
_MEMBER_INDENT = re.compile(r"^([ \t]+)(?:@|def[ \t]|async[ \t]|class[ \t]|[A-Za-z_]\w*[ \t]*[:=])", re.M)
_ONE_LINE_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\'')
_CLOSE = {"(": ")", "[": "]", "{": "}"}
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


class _Statement(NamedTuple):
    start: int
    end: int
    name: str | None   # what it defines (a def, class or assignment)
    kind: str          # import, compound, def, class, assign or other


def focus(text: str, cursor: int, needed: set[str], typed: str = "") -> Outline | None:
    """`text` with the top-level statements the cursor at offset `cursor` does not use
    blanked, or None where nothing is blanked. `typed`: the identifier being typed."""
    strings = string_spans(text)
    stmts = _statements(text, 0, len(text), strings, "")
    if not stmts:
        return None
    begins = [st.start for st in stmts]
    at = bisect_right(begins, cursor) - 1
    # the class the resolver takes the cursor to be in: the last one starting above its line
    above = bisect_right(begins, text.rfind("\n", 0, cursor)) - 1
    last_class = next((i for i in range(above, -1, -1) if stmts[i].kind == "class"), None)
    # the definition the cursor is in (a data table or a call it is in defines nothing it uses)
    always = {i for i in (last_class, at) if i is not None and i >= 0 and stmts[i].kind in ("def", "class")}
    keep = _select(text, stmts, needed, typed, always)
    rw = Rewrite(text)
    dropped = None   # where the run of statements being blanked began (one replacement for a run)
    for i, st in enumerate(stmts):
        if i not in keep:
            dropped = st.start if dropped is None else dropped
            continue
        if dropped is not None:
            rw.replace(dropped, st.start, "\n" * text.count("\n", dropped, st.start))
            dropped = None
        lines = text.count("\n", st.start, st.end)
        if lines > HEAD_LINES and st.kind == "assign" and (head := _head_only(text, st.start, st.end)):
            # a long literal: its first line is all a definition reads
            rw.replace(st.start, st.end, head + "\n" * (lines - head.count("\n")), skip=1)
        elif lines > MEMBER_FOCUS_LINES and st.kind == "class":
            _members(rw, st.start, st.end, strings, cursor, needed, typed)
    if dropped is not None:
        rw.replace(dropped, len(text), "\n" * text.count("\n", dropped))
    return rw.result()


def needed_names(lines: list[str]) -> set[str]:
    """The identifiers of `lines` (the cursor's line and those above it the resolver reads)."""
    return set(IDENTIFIER.findall("\n".join(lines)))


def _select(text: str, stmts: list[_Statement], needed: set[str], typed: str, always: set[int]) -> set[int]:
    """The statements kept: `always`, imports, compound statements that may define what is
    used, definitions of needed names, and, for each class kept, its local bases."""
    by_name: dict[str, list[int]] = {}
    keep = set(always)
    for i, st in enumerate(stmts):
        if st.kind == "import":
            keep.add(i)
        elif st.kind == "compound":
            if text.count("\n", st.start, st.end) <= COMPOUND_LINES or _IMPORT_INSIDE.search(text, st.start, st.end) \
                    or any(_wanted(m.group(1) or m.group(2), needed, typed)
                           for m in _DEFINED_INSIDE.finditer(text, st.start, st.end)):
                keep.add(i)
        elif st.name is not None:
            by_name.setdefault(st.name, []).append(i)
    for name in needed & by_name.keys():
        keep.update(by_name[name])
    if typed:
        keep.update(i for name, idx in by_name.items() if name.startswith(typed) for i in idx)
    # a kept class's bases are read off its header: their definitions are needed too, and
    # theirs (a member may come from a base's base)
    classes, seen = [i for i in keep if stmts[i].kind == "class"], set(needed)
    for _ in range(BASE_DEPTH):
        bases = {b for i in classes for b in IDENTIFIER.findall(_header_line(text, stmts[i].start))} - seen
        seen |= bases
        grown = {i for name in bases & by_name.keys() for i in by_name[name]} - keep
        if not grown:
            break
        keep |= grown
        classes = [i for i in grown if stmts[i].kind == "class"]
    return keep


def _wanted(name: str, needed: set[str], typed: str) -> bool:
    return name in needed or (bool(typed) and name.startswith(typed))


def _head_only(text: str, start: int, end: int) -> str | None:
    """The first line of the assignment at `start`, then a line closing the brackets it
    opens: a definition's signature is its first line. None where that line opens no
    bracket or holds what this reading cannot close (a triple quote, a backslash)."""
    nl = text.find("\n", start, end)
    if nl < 0:
        return None
    first = text[start:nl]
    if '"""' in first or "'''" in first or first.rstrip().endswith("\\"):
        return None
    code = _ONE_LINE_STRING.sub("", first).split("#", 1)[0]
    stack = []
    for ch in code:
        if ch in "([{":
            stack.append(_CLOSE[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                return None
    if not stack or "'" in code or '"' in code:
        return None
    return first + "\n" + "".join(reversed(stack)) + "\n"


def _header_line(text: str, start: int) -> str:
    """The first line of the statement at `start` past its decorators."""
    while text.startswith("@", start):
        nl = text.find("\n", start)
        if nl < 0:
            break
        start = _skip_indent(text, nl + 1)
    nl = text.find("\n", start)
    return text[start:nl if nl >= 0 else len(text)]


def _skip_indent(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _inside(strings, begins: list[int], pos: int) -> bool:
    k = bisect_right(begins, pos) - 1
    return k >= 0 and strings[k][0] < pos < strings[k][1]


def _statements(text: str, start: int, end: int, strings, indent: str) -> list[_Statement]:
    """The statements between `start` and `end` at indentation `indent`, each up to the
    next: a line inside a triple-quoted string begins none, and a definition's decorators
    begin it."""
    out, k, n = [], 0, len(strings)
    begin = kind = name = None
    first, rest = _head_patterns(indent)
    at_start = first.match(text, start, end) if start == 0 or text[start - 1] == "\n" else None
    for m in ([at_start] if at_start else []) + list(rest.finditer(text, start, end)):
        line = m.start() if m is at_start else m.start() + 1
        pos = line + len(indent)
        while k < n and strings[k][1] <= pos:
            k += 1
        if k < n and strings[k][0] < pos:
            continue
        define, defined, imports, compound, assigned = m.groups()
        if kind != "decorator":   # a decorator whose arguments run over lines: its definition continues it
            if begin is not None:
                out.append(_Statement(begin, line, name, kind))
            begin = line
        if define:
            name, kind = defined, define
        elif assigned:
            name, kind = assigned, "assign"
        elif text.startswith("@", pos):
            name, kind = None, "decorator"
        else:
            name, kind = None, "import" if imports else "compound" if compound else "other"
    if begin is not None:
        out.append(_Statement(begin, end, name, "other" if kind == "decorator" else kind))
    return out


@lru_cache(maxsize=32)
def _head_patterns(indent: str) -> tuple[re.Pattern, re.Pattern]:
    """A statement's first line at `indent` (its decorators included), matched at a line's
    start and found after a line break (a literal first character: the search skips ahead
    at C speed, where `^` in multi-line mode is tried at every character). Groups: def or
    class and its name, import, a compound statement's keyword, an assigned name."""
    i = re.escape(indent)
    head = (rf"{i}(?!(?:else|elif|except|finally)\b)(?=[A-Za-z_@])"
            rf"(?:@[^\n]*+\n(?:{i}@[^\n]*+\n)*{i})?"
            r"(?:(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)"
            r"|(import|from)[ \t]"
            r"|(if|try|with|for|while|async[ \t]+(?:with|for))\b"
            r"|([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=(?!=))?")
    return re.compile(head), re.compile("\n" + head)


def _members(rw: Rewrite, start: int, end: int, strings, cursor: int, needed: set[str], typed: str) -> None:
    """Blanks the members of the class at `start`..`end` the cursor does not use (each
    leaves a `pass`), where its members can be told apart."""
    begins = [b for b, _ in strings]
    m = next((m for m in _MEMBER_INDENT.finditer(rw.text, start, end)
              if not _inside(strings, begins, m.end(1))), None)
    if m is None:
        return
    indent = m.group(1)
    members = _statements(rw.text, m.start(), end, strings, indent)
    if len(members) < 2:
        return
    text = rw.text
    line, counted = rw.line_at(start), start   # the line at offset `counted`
    cursor_line = line + text.count("\n", start, min(max(cursor, start), end))
    dropped = None   # where the run of members being blanked began: one `pass` for a run
    for j, (s, e, name, kind) in enumerate(members):
        line += text.count("\n", counted, s)
        counted = s
        if (s <= cursor < e or name == "__init__" or kind in ("import", "compound") or j < MEMBER_HEAD
                or (name is not None and _wanted(name, needed, typed))
                or abs(line - cursor_line) <= MEMBER_WINDOW):
            if dropped is not None:
                rw.replace(dropped, s, indent + "pass" + "\n" * text.count("\n", dropped, s))
                dropped = None
        elif dropped is None:
            dropped = s
    if dropped is not None:
        rw.replace(dropped, end, indent + "pass" + "\n" * text.count("\n", dropped, end))
