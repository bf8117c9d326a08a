"""Which definitions a completion at a cursor needs: resolved server side from the
request's prefix and suffix alone (editors send nothing else).

Signals, strongest first:
- the identifier being typed after a receiver (`ledger.ad|`): members of the receiver's
  class or module that start with it;
- names called or dereferenced in the last lines, resolved through the file's imports,
  the receiver's class where it can be read off (`self.`/`this.`, a Go receiver, a
  constructor call or a type annotation above), else by name;
- the identifier being typed alone (`pars|`): definitions starting with it;
- the file's imports, so the names it can reach fill the remaining places.

The cursor's own file contributes only definitions parsed from the request (its
indexed copy may hold the very line being completed), and never the definition on
the cursor's line: a completion of `def f(...)` must not be shown f's signature.

`resolve` returns `Definition`s best first; `render_compact` is their prompt form
(signatures and first doc lines grouped by file, no bodies), rendered by
codetailor.prompt_format like every other part of a prompt.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict, defaultdict
from dataclasses import replace
from functools import lru_cache

from codetailor.errors import CodetailorError
from codetailor.prompt_format import Signature, definitions_from, render_definitions
from codetailor.languages import SYNTAX_LANGUAGES, language_of

from retrieval.chunking import _parser
from retrieval.focus import focus, needed_names
from retrieval.outline import outline, suspect
from retrieval.symbol_table import SymbolTable
from retrieval.symbols import Definition, FileSymbols, Import, extract

RECENT_LINES = 12        # lines above the cursor whose calls and dereferences count
TYPE_SCAN_LINES = 400    # lines above the cursor searched for a variable's class
IMPORT_FILL = 8          # imported names that fill the remaining places
MAX_USES = 40            # names used in the last lines that are looked up
PARSE_TIMEOUT_MS = 200    # a request's parse past this is given up (its own definitions unknown)
LINE_TAIL = 400          # characters of a line read before the cursor (minified code has long lines)
_DECAY = 0.9             # weight of a use one line further from the cursor
_SELF = {"self", "cls", "this"}
_KEYWORDS = frozenset("""and as assert async await break case catch class const continue def default defer del
delete do elif else enum except export extends false final finally for from func function go goto if implements
import in instanceof interface is lambda let match new nil none not null or package pass private protected public
raise range return select static struct super switch this throw throws true try type typeof var void while with
yield self cls none true false print len str int float bool dict list set tuple string number any error""".split())
_DECLARED = re.compile(r"(?:\b(?:def|class|func|function|interface|type|struct|enum)\s+|\bfunc\s*\([^)]*\)\s*)$")
_IMPORT_LINE = re.compile(r"\s*(?:import\b|from\s+\S+\s+import\b|package\b|#include\b)")
# an import line after a line break (a literal first character: searched at C speed, where a
# multi-line `^` is tried at every character)
_IMPORT_LINES = re.compile(r"\n[^\S\n]*(?:import\b|from[^\S\n]+\S+[^\S\n]+import\b|package\b|#include\b)[^\n]*")
_DEFINING = re.compile(r"(?:^|\s)(?:def|class|func|function|interface|type|struct|enum)\s+[\w$]*$")

_CHAIN = re.compile(r"(?<![\w$.])((?:[A-Za-z_$][\w$]*\s*\.\s*)*[A-Za-z_$][\w$]*)(\s*\()?")
_PARTIAL = re.compile(r"((?:[A-Za-z_$][\w$]*\.)*)([A-Za-z_$][\w$]*)?$")
# Where a variable's class can be read off: (pattern, group of the variable, group of the class).
_TYPE_PATTERNS = {
    # v = Foo(...), v := Foo{...}, v = new Foo(...), v = &Foo{...}, v = mod.Foo(...)
    "assign": (re.compile(r"\b([A-Za-z_$][\w$]*)\s*(?::=|=)\s*(?:new\s+|&)?(?:[\w$]+\.)*([A-Z][\w$]*)\s*(?:<[^>]*>)?\s*[({]"), 1, 2),
    # v: Foo (Python / TypeScript annotations, parameters included)
    "annotation": (re.compile(r"\b([A-Za-z_$][\w$]*)\??\s*:\s*(?:[\w$]+\.)*([A-Z][\w$]*)"), 1, 2),
    # Foo v = ..., Foo<T> v; (Java / C-like declarations and parameters)
    "declaration": (re.compile(r"\b([A-Z][\w$]*)(?:<[^>]*>)?\s+([a-z_$][\w$]*)\s*[=;,)]"), 2, 1),
    # v *Foo, v Foo (Go parameters and vars)
    "go": (re.compile(r"\b([a-z_]\w*)\s+\*?(?:\w+\.)*([A-Z]\w*)\b"), 1, 2),
}
_TYPE_KINDS = {"python": ("assign", "annotation"), "typescript": ("assign", "annotation", "declaration"),
               "javascript": ("assign", "declaration"), "java": ("assign", "declaration"), "go": ("assign", "go")}


def _recent_uses(prefix_lines: list[str]) -> list[tuple[list[str], bool, float]]:
    """(dotted chain, is a call, weight) for the names used in the last lines, nearest first
    (at most MAX_USES, and only the end of a very long line: minified code costs no more)."""
    out = []
    lines = prefix_lines[-RECENT_LINES:]
    for back, line in enumerate(reversed(lines)):
        if _IMPORT_LINE.match(line):
            continue   # imports are credited as imports, not as uses
        code = line[-LINE_TAIL:]
        code = code.split("#", 1)[0] if "#" in code and '"' not in code and "'" not in code else code
        w = _DECAY ** back
        for m in reversed(list(_CHAIN.finditer(code))):
            parts = [p.strip() for p in m.group(1).split(".")]
            call = m.group(2) is not None
            if parts[0].lower() in _KEYWORDS and parts[0] not in _SELF:
                continue
            if _DECLARED.search(code, max(0, m.start() - 80), m.start()):
                continue   # the name a definition line introduces is not a use
            if call or len(parts) > 1 or parts[0][:1].isupper():
                out.append((parts, call, w))
                if len(out) == MAX_USES:
                    return out
    return out


def _variable_class(text: str, var: str, language: str) -> str | None:
    """The class of `var` as the last assignment, annotation or declaration in `text` (the
    lines above the cursor) tells. Lines are visited from the end, only those holding `var`."""
    kinds = _TYPE_KINDS.get(language, ())
    end = len(text)
    while (at := text.rfind(var, 0, end)) >= 0:
        start = text.rfind("\n", 0, at) + 1
        stop = text.find("\n", at)
        stop = len(text) if stop < 0 else stop
        line = text[max(start, stop - LINE_TAIL):stop]
        end = start
        best, where = None, -1
        for kind in kinds:
            pattern, vg, cg = _TYPE_PATTERNS[kind]
            for m in pattern.finditer(line):
                if m.group(vg) == var and m.start() > where:
                    best, where = m.group(cg), m.start()
        if best:
            return best
    return None


class _TreeCache:
    """The last parse of each file being edited. An editor sends the same file again a few
    keystrokes later; given the previous tree and the edit, tree-sitter re-parses only
    what changed (a 2,000-line file: well under a millisecond instead of several)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._items: OrderedDict[tuple, tuple[bytes, object]] = OrderedDict()
        self._read: OrderedDict[tuple, tuple[str, object]] = OrderedDict()
        self._lock = threading.Lock()

    def read_off(self, key: tuple, text: str):
        """What was read off the parse of exactly `text` under `key`, if still held: a
        keystroke inside a function body leaves the file's outline as it was."""
        with self._lock:
            got = self._read.get(key)
        return got[1] if got is not None and got[0] == text else None

    def keep(self, key: tuple, text: str, value) -> None:
        with self._lock:
            self._read[key] = (text, value)
            self._read.move_to_end(key)
            while len(self._read) > self.size:
                self._read.popitem(last=False)

    def parse(self, scope: str, path: str, language: str, text: str, variant: str = ""):
        """The request's tree, or None when it cannot be parsed within PARSE_TIMEOUT_MS.
        `variant` keeps a file's outline and its whole text apart, each re-parsed from its own."""
        src = text.encode("utf-8")
        key = (scope, path, language, variant)
        with self._lock:   # taken out while in use: an edited tree belongs to one parse
            prev = self._items.pop(key, None)
        old_tree = None
        if prev is not None:
            old, old_tree = prev
            if old == src:
                tree = old_tree
            else:
                start = _common_prefix(old, src)
                end = _common_suffix(old, src, start)
                old_tree.edit(start, len(old) - end, len(src) - end, _point(old, start),
                              _point(old, len(old) - end), _point(src, len(src) - end))
        if prev is None or old != src:
            tree = _request_parse(path, language, src, old_tree)
            if tree is None:
                return None
        with self._lock:
            self._items[key] = (src, tree)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return tree

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._read.clear()


@lru_cache(maxsize=None)
def _request_parser(language: str, tsx: bool):
    """The chunker's grammar in a parser of its own, with a time limit: a request's text is
    the client's, and tree-sitter's error recovery on garbage can take seconds."""
    from tree_sitter import Parser

    parser = Parser(_parser(language, tsx).language)
    parser.timeout_micros = max(1, int(PARSE_TIMEOUT_MS * 1000))
    return parser


def _request_parse(path: str, language: str, src: bytes, old_tree):
    parser = _request_parser(language, path.endswith(".tsx"))
    try:   # tree-sitter holds the GIL while parsing: one parse at a time per process
        return parser.parse(src, old_tree) if old_tree is not None else parser.parse(src)
    except ValueError:   # ran past the time limit
        parser.reset()
        return None


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix, by bisection over slice comparisons (C speed)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, prefix: int) -> int:
    """Length of the longest common suffix not overlapping a common prefix of `prefix` bytes."""
    lo, hi = 0, min(len(a), len(b)) - prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(src: bytes, offset: int) -> tuple[int, int]:
    return src.count(b"\n", 0, offset), offset - (src.rfind(b"\n", 0, offset) + 1)


_trees = _TreeCache()


class _Ranker:
    def __init__(self, cursor_path: str):
        self.cursor_path = cursor_path
        self.scores: dict[tuple, float] = defaultdict(float)
        self.defs: dict[tuple, Definition] = {}

    def add(self, defs, score: float, *, split: bool = True) -> None:
        """Credit `defs`; an ambiguous name's credit is shared among its candidates."""
        defs = list(defs)
        if not defs:
            return
        each = score / len(defs) if split else score
        for d in defs:
            key = (d.path, d.qualname, d.line)
            self.defs[key] = d
            # the cursor's own definitions are mostly in sight already: they rank below others
            self.scores[key] += each * (0.5 if d.path == self.cursor_path else 1.0)

    def ranked(self, limit: int) -> list[Definition]:
        keys = sorted(self.scores, key=lambda k: (-self.scores[k], k))
        return [self.defs[k] for k in keys[:limit]]


class _Scope:
    """What names mean at the cursor: the request's own definitions and imports, the table."""

    def __init__(self, table: SymbolTable | None, path: str, language: str, request_defs: list[Definition],
                 imports: list[Import], cursor_line: int, prefix_lines: list[str]):
        self.table, self.path, self.language = table, path, language
        self.local = request_defs
        self.local_top = {d.name: d for d in request_defs if d.container is None}
        self.local_members: dict[str, list[Definition]] = defaultdict(list)
        for d in request_defs:
            if d.container:
                self.local_members[d.container].append(d)
        self.imports = {i.alias: i for i in imports if i.alias != "*"}
        self.star_modules = [i.module for i in imports if i.alias == "*"]
        self._type_text = "\n".join(prefix_lines[-TYPE_SCAN_LINES:])
        self._types: dict[str, str | None] = {}
        self.enclosing = self._enclosing_class(cursor_line)
        self.cursor_line = cursor_line

    def _enclosing_class(self, cursor_line: int) -> str | None:
        above = [d for d in self.local if d.line <= cursor_line]
        for d in reversed(above):
            if d.kind == "class" or d.kind == "type":
                return d.name
            if d.kind == "method" and d.container and self.language == "go":
                return d.container
        return None

    def foreign(self, defs) -> list[Definition]:
        """Index rows of other files only: the cursor's file speaks through the request."""
        return [d for d in defs if d.path != self.path]

    # -- lookups ---------------------------------------------------------------------------------------
    def members(self, cls: str, prefix: str = "", exact: str | None = None) -> list[Definition]:
        local = [d for d in self.local_members.get(cls, ())
                 if (exact is None or d.name == exact) and d.name.startswith(prefix) and d.line != self.cursor_line]
        found = []
        if self.table is not None:
            rows = self.table.members(cls, exact or prefix, limit=60)
            found = self.foreign(d for d in rows if exact is None or d.name == exact)
        if not found and not local:   # the member may come from a base class
            for base in self.bases(cls):
                found += self.members(base, prefix, exact) if base != cls else []
        return local + found

    def bases(self, cls: str) -> list[str]:
        sigs = [d.signature for d in self.local if d.name == cls and d.kind == "class"]
        if not sigs and self.table is not None:
            sigs = [d.signature for d in self.foreign(self.table.named(cls, limit=5)) if d.kind == "class"]
        out = []
        for sig in sigs[:1]:
            m = re.search(r"\(([^)]*)\)\s*:?$", sig) if self.language == "python" else \
                re.search(r"\b(?:extends|implements)\s+(.+)$", sig)
            if m:
                out += [b.split(".")[-1].split("<")[0].strip() for b in re.split(r",|\bimplements\b", m.group(1))
                        if b.strip() and "=" not in b]
        return [b for b in out if b and b not in ("object", "Generic")][:3]

    def named(self, name: str) -> list[Definition]:
        if name in self.local_top:
            d = self.local_top[name]
            return [d] if d.line != self.cursor_line else []
        if self.table is None:
            return []
        top = [d for d in self.foreign(self.table.named(name, limit=20)) if d.container is None]
        return top[:5]

    def resolve_import(self, imp: Import) -> list[Definition]:
        return self.foreign(self.table.resolve_import(imp, limit=40)) if self.table is not None else []

    def class_of(self, head: str) -> str | None:
        """The class a receiver name denotes: self/this, a Go receiver, a typed variable, or a class name."""
        if head in _SELF or (self.language == "go" and head in self._go_receivers()):
            return self.enclosing
        if self.type_of(head):
            return self.type_of(head)
        if head[:1].isupper():
            return head
        return None

    def type_of(self, var: str) -> str | None:
        if var not in self._types:   # searched per name used: a handful per request
            self._types[var] = _variable_class(self._type_text, var, self.language)
        return self._types[var]

    def _go_receivers(self) -> set[str]:
        out = set()
        for d in self.local:
            m = re.match(r"func\s*\(\s*(\w+)\s", d.signature) if d.kind == "method" else None
            if m:
                out.add(m.group(1))
        return out


def resolve(table: SymbolTable | None, path: str, prefix: str, suffix: str = "", *,
            language: str | None = None, limit: int = 12) -> list[Definition]:
    """The definitions to show for a completion at the end of `prefix` in `path`, best first."""
    language = language or language_of(path) or ""
    if language not in SYNTAX_LANGUAGES:
        return []
    prefix_lines = prefix.split("\n")
    cursor_line = len(prefix_lines)
    current = prefix_lines[-1][-LINE_TAIL:]
    # the identifier being typed, with its receiver chain (not a name being defined)
    m = _PARTIAL.search(current)
    chain = [p for p in (m.group(1) or "").split(".") if p]
    partial = m.group(2) or ""
    uses = _recent_uses([*prefix_lines[:-1], current[:m.start()]])
    # what of the request's own definitions can be read at all: the names of the last lines
    # and the classes of the receivers there (`v.x`: v's class as the lines above tell)
    scope_text = "\n".join(prefix_lines[-TYPE_SCAN_LINES:])
    types = {v: _variable_class(scope_text, v, language)
             for v in ({parts[-2] for parts, _, _ in uses if len(parts) > 1} | set(chain[-1:])) - _SELF}
    needed = needed_names([ln[-LINE_TAIL:] for ln in prefix_lines[-RECENT_LINES:]]) | {c for c in types.values() if c}
    fs = _request_symbols(str(table.path) if table is not None else "", path, language, prefix + suffix,
                          (len(prefix), needed, partial))
    request_defs = [d for d in fs.definitions if d.line != cursor_line]
    scope = _Scope(table, path, language, request_defs, fs.imports, cursor_line, prefix_lines)
    scope._types.update(types)
    rank = _Ranker(path)
    if not _DEFINING.search(current):
        if chain:
            _credit_member(scope, rank, chain, partial, 10.0, prefix_match=True)
        elif len(partial) >= 2 and partial.lower() not in _KEYWORDS:
            _credit_partial(scope, rank, partial, 6.0)

    # names called or dereferenced in the last lines (the chain being typed counted above)
    for parts, call, w in uses:
        weight = (8.0 if call else 5.0) * w
        if len(parts) == 1:
            _credit_name(scope, rank, parts[0], weight, call)
        else:
            _credit_member(scope, rank, parts[:-1], parts[-1], weight, prefix_match=False)

    # imported names used near the cursor, or not used yet (likely next), fill the remaining places
    if table is not None:
        near = []   # the last lines, imports aside (a line at a time from the end: a few hundred)
        for line in reversed(prefix_lines):
            if not _IMPORT_LINE.match(line):
                near.append(line)
                if len(near) == TYPE_SCAN_LINES:
                    break
        near, anywhere = "\n".join(reversed(near)), _IMPORT_LINES.sub("\n", "\n" + prefix)
        fill = [i for i in fs.imports if i.name not in (None, "*") and (i.alias in near or i.alias not in anywhere)]
        for imp in fill[:IMPORT_FILL]:
            rank.add(scope.resolve_import(imp)[:3], 1.0)
    if scope.enclosing:
        for base in scope.bases(scope.enclosing):
            rank.add([d for d in scope.named(base) if d.kind in ("class", "type")], 1.5)
    return rank.ranked(limit)


def _request_symbols(scope: str, path: str, language: str, text: str, near=None) -> FileSymbols:
    """Definitions and imports of the request's text, read off the parse of its outline
    (bodies blanked, a fraction of the parse) unless that parse has an error the outline
    may have made; then off the text's own parse. With `near` (the cursor's offset, the
    names used near it, the identifier being typed), a Python request is first focused
    on what resolution there reads (retrieval/focus.py): its parse is bounded by the
    cursor's neighbourhood, not by the file."""
    if near is not None and language == "python":
        fs = _focused_symbols(scope, path, language, text, *near)
        if fs is not None:
            return fs
    short = outline(text, language)
    if short is not None:
        key = (scope, path, language, "outline")
        fs = _trees.read_off(key, short.text)
        if fs is not None:
            return fs
        tree = _trees.parse(scope, path, language, short.text, "outline")
        if tree is None:   # past the time limit: the whole text would be no faster
            return FileSymbols(path, language, "")
        if not suspect(tree, short.blanked):
            fs = extract(path, short.text, language, tree=tree)
            _trees.keep(key, short.text, fs)
            return fs
    tree = _trees.parse(scope, path, language, text)
    return extract(path, text, language, tree=tree) if tree is not None else FileSymbols(path, language, "")


def _focused_symbols(scope: str, path: str, language: str, text: str, cursor: int, needed: set[str],
                     typed: str) -> FileSymbols | None:
    """What the focused request's parse reads off, or None where focusing does not apply or
    its parse has an error next to a part it blanked (one the focus or outline may have made)."""
    near = focus(text, cursor, needed, typed)
    if near is None:
        return None
    short = outline(near.text, language)
    reduced, blanked = (short.text, near.blanked + short.blanked) if short is not None else (near.text, near.blanked)
    key = (scope, path, language, "focus")
    fs = _trees.read_off(key, reduced)
    if fs is not None:
        return fs
    tree = _trees.parse(scope, path, language, reduced, "focus")
    if tree is None:   # past the time limit: the whole text would be no faster
        return FileSymbols(path, language, "")
    if suspect(tree, blanked):
        return None
    fs = extract(path, reduced, language, tree=tree)
    _trees.keep(key, reduced, fs)
    return fs


def _credit_name(scope: _Scope, rank: _Ranker, name: str, weight: float, call: bool) -> None:
    imp = scope.imports.get(name)
    if imp is not None:
        if imp.name is None:   # a module: nothing to show for the bare name
            return
        defs = scope.resolve_import(imp)
    else:
        defs = scope.named(name)
    classes = [d for d in defs if d.kind == "class"]
    if call and classes:   # constructing a class: how to call its constructor matters most
        ctors = [c for d in classes[:2] for n in ("__init__", "constructor", d.name)
                 for c in scope.members(d.name, exact=n)]
        rank.add(ctors, weight)
        weight *= 0.5
    rank.add(defs, weight)


def _module_import(scope: _Scope, chain: list[str]) -> tuple[Import | None, list[str]]:
    """The longest import alias that is a dotted prefix of `chain` (`import a.b` then `a.b.c`)."""
    for n in range(len(chain), 0, -1):
        imp = scope.imports.get(".".join(chain[:n]))
        if imp is not None:
            return imp, chain[n:]
    return None, chain


def _credit_member(scope: _Scope, rank: _Ranker, chain: list[str], member: str, weight: float,
                   prefix_match: bool) -> None:
    exact = None if prefix_match else member
    prefix = member if prefix_match else ""
    imp, rest = _module_import(scope, chain)
    if imp is not None and not rest:
        module = imp.module
        if imp.name not in (None, "*", "default"):
            target = scope.resolve_import(imp)   # the class or function named, else a submodule's top level
            classes = [d for d in target if d.kind in ("class", "type") and d.name == imp.name]
            if classes:
                rank.add(scope.members(imp.name, prefix, exact)[:20], weight, split=exact is not None)
                rank.add(classes, weight * 0.2)
                return
            if any(d.name == imp.name for d in target):
                return   # a function or constant: no members to show
            module = f"{imp.module}.{imp.name}"
        if scope.table is not None:
            defs = scope.foreign(scope.table.in_module(module, exact, limit=60))
            rank.add([d for d in defs if d.name.startswith(prefix)][:20], weight, split=exact is not None)
        return
    # the receiver's class: self/this or a Go receiver alone, else the class of the chain's last
    # name (a typed variable, a field named like an annotated parameter, a class name)
    cls = scope.class_of(chain[0]) if len(chain) == 1 else scope.type_of(chain[-1])
    if cls is None:
        return
    rank.add(scope.members(cls, prefix, exact)[:20], weight, split=exact is not None)
    if chain[0] not in _SELF:
        rank.add([d for d in scope.named(cls) if d.kind in ("class", "type")], weight * 0.2)


def _credit_partial(scope: _Scope, rank: _Ranker, partial: str, weight: float) -> None:
    local = [d for n, d in scope.local_top.items() if n.startswith(partial) and n != partial]
    rank.add(local, weight * 0.5)
    imported = [i for a, i in scope.imports.items() if a.startswith(partial)]
    for imp in imported:
        rank.add(scope.resolve_import(imp)[:3], weight * 1.2)
    if scope.table is not None:
        rows = [d for d in scope.foreign(scope.table.with_prefix(partial, limit=40, top_level=True))
                if d.name != partial]
        # shorter completions of what is typed first; many candidates share the credit
        rows.sort(key=lambda d: (len(d.name), d.name))
        rank.add(rows[:10], weight, split=True)


# -- prompt form: codetailor.prompt_format renders it (one owner of what prompts look like) ----------------------

def render_compact(defs: list[Definition], language: str | None = None) -> str:
    """The prompt's definitions pseudo-file for `defs` (`language` sets its comment style)."""
    sigs = definitions_from(defs)
    if language and sigs:
        sigs = (replace(sigs[0], language=language), *sigs[1:])
    return render_definitions(sigs)


def render_within(defs: list[Definition], fits, language: str | None = None) -> tuple[str, int]:
    """The compact form of the best definitions whose text `fits(text)` (a token budget,
    say), and how many were dropped for it: the weakest go first."""
    for n in range(len(defs), 0, -1):
        text = render_compact(defs[:n], language)
        if fits(text):
            return text, len(defs) - n
    return "", len(defs)


# -- entry points -------------------------------------------------------------------------------------------------

def split_at_cursor(text: str, line: int, column: int | None = None) -> tuple[str, str]:
    """(prefix, suffix) of `text` at 1-based `line` and `column` (default: the line's start),
    the request an editor would send for that cursor."""
    lines = text.split("\n")
    if line < 1 or line > len(lines):
        raise CursorOutsideFile(f"line {line} is outside the file (1..{len(lines)})")
    col = 1 if column is None else column
    if col < 1 or col > len(lines[line - 1]) + 1:
        raise CursorOutsideFile(f"column {col} is outside line {line} (1..{len(lines[line - 1]) + 1})")
    offset = sum(len(x) + 1 for x in lines[:line - 1]) + col - 1
    return text[:offset], text[offset:]


def symbol_context(paths, path: str, prefix: str, suffix: str = "", *, limit: int = 12) -> list[Definition]:
    """`resolve` against the tenant's table; a tenant without one gets the request's own definitions."""
    from retrieval.symbol_table import open_table

    return resolve(open_table(paths), path, prefix, suffix, limit=limit)


def prompt_definitions(paths, path: str, prefix: str, suffix: str = "", *, limit: int = 12,
                       exclude_paths=()) -> tuple[Signature, ...]:
    """The definitions a completion at the cursor uses, as codetailor.completion takes them (best
    first): what serving, evaluation, `generate` and training's examples put in a prompt, so each
    stage shows the same ones for the same cursor. The cursor's file speaks only through `prefix`
    and `suffix` (`resolve`); definitions in `exclude_paths` (held-out files) are never shown."""
    excluded = set(exclude_paths)
    defs = symbol_context(paths, path, prefix, suffix, limit=2 * limit if excluded else limit)
    return definitions_from([d for d in defs if d.path not in excluded][:limit])


class CursorOutsideFile(CodetailorError):
    pass
