"""Split a source file into chunks: syntactic blocks with tree-sitter, or line windows.

Syntax chunking (Python, Java, JavaScript, TypeScript, Go): each function, method,
class or type definition becomes one chunk with the comments and decorators right
above it; a class too big for the budget becomes a header chunk plus its members
(symbol `Class.method`); top-level statements between definitions (imports,
constants, calls) are grouped until the budget; anything still too big is cut
into line windows that keep its symbol. Other languages use line windows.

Each chunk records whether its symbol is marked deprecated, so a selection can
drop it at symbol level rather than dropping the whole file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from codetailor.languages import SYNTAX_LANGUAGES


@dataclass(frozen=True)
class Chunk:
    path: str
    language: str
    start_line: int   # 1-based, inclusive
    end_line: int     # 1-based, inclusive
    symbol: str | None
    text: str
    deprecated: bool = False


# Definition node types per language; CONTAINERS are split into members when too big.
_DEFS = {
    "python": {"function_definition", "class_definition", "decorated_definition"},
    "java": {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
             "annotation_type_declaration", "method_declaration", "constructor_declaration"},
    "javascript": {"function_declaration", "generator_function_declaration", "class_declaration",
                   "method_definition", "export_statement"},
    "typescript": {"function_declaration", "generator_function_declaration", "class_declaration",
                   "abstract_class_declaration", "method_definition", "export_statement",
                   "interface_declaration", "type_alias_declaration", "enum_declaration",
                   "function_signature", "method_signature"},
    "go": {"function_declaration", "method_declaration", "type_declaration"},
}
_CONTAINERS = {"class_definition", "class_declaration", "abstract_class_declaration", "interface_declaration",
               "enum_declaration", "record_declaration"}
_COMMENTS = {"comment", "line_comment", "block_comment"}

_DEPRECATED_HEAD = re.compile(r"(?i)@deprecated\b|^\s*(//+|#|\*|/\*\*?)\s*deprecated\b", re.M)
_DEPRECATED_WARN = re.compile(r"warn\([^)]*DeprecationWarning", re.S)
_DOCSTRING_DEPRECATED = re.compile(r"(?i)^\s*[rRuU]?(\"\"\"|''')[^\n]*\n?(?:[^\n]*\n){0,3}?[^\n]*deprecat", re.M)


@lru_cache(maxsize=None)
def _parser(language: str, tsx: bool = False):
    from tree_sitter import Language, Parser

    if language == "python":
        import tree_sitter_python as m
        lang = m.language()
    elif language == "java":
        import tree_sitter_java as m
        lang = m.language()
    elif language == "javascript":
        import tree_sitter_javascript as m
        lang = m.language()
    elif language == "typescript":
        import tree_sitter_typescript as m
        lang = m.language_tsx() if tsx else m.language_typescript()
    elif language == "go":
        import tree_sitter_go as m
        lang = m.language()
    else:
        raise ValueError(language)
    return Parser(Language(lang))


def parse(path: str, language: str, text: str):
    """The tree-sitter tree of one file (the chunker's and the symbol table's one parser)."""
    return _parser(language, path.endswith(".tsx")).parse(text.encode("utf-8"))


def _inner(node):
    """The definition inside a wrapper (decorators, export)."""
    for field in ("definition", "declaration"):
        child = node.child_by_field_name(field)
        if child is not None:
            return child
    return node


def _name(node, src: bytes) -> str | None:
    node = _inner(node)
    name = node.child_by_field_name("name")
    if name is None and node.type == "type_declaration":  # go: type_spec holds the name
        for c in node.named_children:
            name = c.child_by_field_name("name")
            if name is not None:
                break
    return src[name.start_byte:name.end_byte].decode("utf-8", "replace") if name is not None else None


@dataclass
class _Unit:
    start: int   # 0-based rows, inclusive
    end: int
    symbol: str | None
    is_def: bool
    deprecated: bool = False


def _is_deprecated(node, lines: list[str], start: int) -> bool:
    inner = _inner(node)
    body = inner.child_by_field_name("body")
    head_end = body.start_point[0] if body is not None else inner.end_point[0]
    head = "".join(lines[start:head_end + 1])
    if _DEPRECATED_HEAD.search(head):
        return True
    whole = "".join(lines[start:node.end_point[0] + 1])
    if _DEPRECATED_WARN.search(whole):
        return True
    if body is not None and body.named_children:  # python docstring: body's first statement
        first = body.named_children[0]
        if first.type == "expression_statement" and first.named_children and first.named_children[0].type == "string":
            return "deprecat" in "".join(lines[first.start_point[0]:first.end_point[0] + 1]).lower()
    return False


def _units(nodes, lines: list[str], src: bytes, language: str, max_lines: int,
           prefix: str | None, inherited_deprecated: bool) -> list[_Unit]:
    defs = _DEFS[language]
    out: list[_Unit] = []
    pending_comment: int | None = None   # start row of comments directly above the next node
    prev_end = -2
    for node in nodes:
        if not node.is_named:
            continue
        s, e = node.start_point[0], node.end_point[0]
        if node.end_point[1] == 0 and e > s:  # a node ending at column 0 ends on the line before
            e -= 1
        if node.type in _COMMENTS:
            if pending_comment is None or s > prev_end + 1:
                if pending_comment is not None:
                    out.append(_Unit(pending_comment, prev_end, prefix, False, inherited_deprecated))
                pending_comment = s
            prev_end = e
            continue
        is_def = node.type in defs and (node.type != "export_statement" or _inner(node) is not node)
        start = s
        if pending_comment is not None:
            if is_def and s <= prev_end + 1:
                start = pending_comment
            else:
                out.append(_Unit(pending_comment, prev_end, prefix, False, inherited_deprecated))
            pending_comment = None
        prev_end = e
        if not is_def:
            out.append(_Unit(start, e, prefix, False, inherited_deprecated))
            continue
        name = _name(node, src)
        symbol = f"{prefix}.{name}" if prefix and name else (name or prefix)
        deprecated = inherited_deprecated or _is_deprecated(node, lines, start)
        inner = _inner(node)
        body = inner.child_by_field_name("body")
        members = body.named_children if body is not None and inner.type in _CONTAINERS else []
        # split a class that is too big, or that holds a deprecated member (so it can be dropped alone)
        if members and (e - start + 1 > max_lines or (not deprecated and any(
                m.type in defs and _is_deprecated(m, lines, m.start_point[0]) for m in members))):
            head_end = members[0].start_point[0] - 1
            if head_end >= start:
                out.append(_Unit(start, head_end, symbol, False, deprecated))
            out.extend(_units(members, lines, src, language, max_lines, symbol, deprecated))
            if e > (members[-1].end_point[0]):  # closing brace
                out.append(_Unit(members[-1].end_point[0] + 1, e, symbol, False, deprecated))
        else:
            out.append(_Unit(start, e, symbol, True, deprecated))
    if pending_comment is not None:
        out.append(_Unit(pending_comment, prev_end, prefix, False, inherited_deprecated))
    return out


def _windows(start: int, end: int, size: int, overlap: int):
    step = max(1, size - overlap)
    s = start
    while True:
        e = min(end, s + size - 1)
        yield s, e
        if e >= end:
            return
        s += step


def _make(path, language, lines, s, e, symbol, deprecated) -> Chunk | None:
    text = "".join(lines[s:e + 1])
    if not any(ch.isalnum() for ch in text):  # blank lines or a lone closing brace
        return None
    return Chunk(path, language, s + 1, e + 1, symbol, text, deprecated)


def chunk_lines(path: str, language: str, text: str, size: int, overlap: int) -> list[Chunk]:
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    out = []
    for s, e in _windows(0, len(lines) - 1, size, min(overlap, size - 1)):
        body = "".join(lines[s:e + 1])
        c = _make(path, language, lines, s, e, None,
                  bool(_DEPRECATED_HEAD.search(body) or _DEPRECATED_WARN.search(body)))
        if c:
            out.append(c)
    return out


def chunk_syntax(path: str, language: str, text: str, max_lines: int) -> list[Chunk]:
    src = text.encode("utf-8")
    tree = parse(path, language, text)
    lines = text.splitlines(keepends=True)
    units = _units(tree.root_node.named_children, lines, src, language, max_lines, None, False)
    out: list[Chunk] = []
    group: list[_Unit] = []

    def flush():
        if group:
            s, e = group[0].start, group[-1].end
            for ws, we in _windows(s, e, max_lines, 0):
                c = _make(path, language, lines, ws, we, group[0].symbol, any(u.deprecated for u in group))
                if c:
                    out.append(c)
            group.clear()

    for u in units:
        if u.is_def:
            flush()
            for ws, we in _windows(u.start, u.end, max_lines, 0):
                c = _make(path, language, lines, ws, we, u.symbol, u.deprecated)
                if c:
                    out.append(c)
        else:
            if group and (u.end - group[0].start + 1 > max_lines or u.symbol != group[0].symbol):
                flush()
            group.append(u)
    flush()
    return out


def chunk_text(path: str, language: str, text: str, mode: str, *, chunk_lines_n: int = 20,
               overlap: int = 5, max_lines: int = 60) -> list[Chunk]:
    """Chunks of one file; syntax mode falls back to line windows for other languages."""
    if mode == "syntax" and language in SYNTAX_LANGUAGES:
        return chunk_syntax(path, language, text, max_lines)
    return chunk_lines(path, language, text, chunk_lines_n, overlap)
