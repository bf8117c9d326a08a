"""Completion tasks cut from held-out files, as an editor would send them.

Three kinds, each a cursor inside a real file whose continuation is known:
- next_line: the cursor at the end of the line above a code line; the target
  is that whole line (the model emits the newline itself, see prompt_format).
- rest_of_line: the cursor somewhere inside a code line; the target is the rest.
- api_args: the cursor right after `name(` where `name` is a function or class
  defined in the tenant's own code; the target is the argument list.

The prefix is the file above the cursor. The suffix is the code *below* the
cursor's line: the user is writing the line now, so it is not there yet.

Targets are code, not boilerplate: blank lines, comment-only lines, docstrings
and other multi-line string interiors, the licence header (it is a comment
block), and trivially short lines (`)`, `else:`, a lone keyword) never become
targets: a completion that copies them measures the repository's template,
not the customisation (see docs/cqi.md).
"""

from __future__ import annotations

import ast
import builtins
import keyword
import random
import re
from dataclasses import asdict, dataclass

from codetailor.completion import Cursor
from codetailor.languages import language_of

KINDS = ("next_line", "rest_of_line", "api_args")

_HASH_COMMENT = {"python", "shell", "ruby", "yaml", "toml", "r", "makefile", "dockerfile"}
_DASH_COMMENT = {"sql", "lua"}
_TRIVIAL_WORDS = set(keyword.kwlist) | {"break", "continue", "default", "end", "fi", "done", "esac", "then"}
_DEF_NAME = re.compile(r"\b(?:def|class|function|func|interface|struct|type|fn|enum|record)\s+([A-Za-z_]\w*)")
# Java/C#-style method declarations: `Type name(` after a modifier.
_METHOD_DECL = re.compile(r"\b(?:public|private|protected|static|final)\s+[\w<>\[\], ]+?\s+([A-Za-z_]\w*)\s*\(")
_DEF_BEFORE = re.compile(r"\b(def|class|function|func|fn|new)\s*$")


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    path: str
    language: str | None
    line: int               # 1-based line of the target
    column: int | None      # 0-based cursor column; None = the start of `line`
    prefix: str             # the file up to the cursor (ends without "\n" for next_line)
    suffix: str             # "\n" + the lines below the cursor's line
    target: str
    api: str | None = None  # the internal API whose arguments are the target

    def as_dict(self) -> dict:
        return asdict(self)

    def cursor(self) -> Cursor:
        """The editor's cursor this task stands for: a next-line task's sits at the start of its line."""
        if self.kind == "next_line":
            return Cursor(self.prefix + "\n", self.suffix, self.path, "line_start")
        return Cursor(self.prefix, self.suffix, self.path, "mid_line")


def _comment_prefixes(language: str | None) -> tuple[str, ...]:
    if language in _HASH_COMMENT:
        return ("#",)
    if language in _DASH_COMMENT:
        return ("--",)
    if language in ("markdown", "text", "json", None):
        return ()
    return ("//", "/*", "*", "*/")


def _python_string_lines(source: str) -> set[int]:
    """Lines that are docstrings / bare string statements, or inside a multi-line string."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)) and \
                isinstance(getattr(node.value, "value", ""), str):
            out.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        elif isinstance(node, (ast.Constant, ast.JoinedStr)) and node.end_lineno and node.end_lineno > node.lineno:
            if isinstance(node, ast.JoinedStr) or isinstance(node.value, str):
                out.update(range(node.lineno + 1, node.end_lineno + 1))
    return out


def _block_comment_lines(lines: list[str]) -> set[int]:
    out, inside = set(), False
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if inside:
            out.add(i)
            inside = "*/" not in s
        elif s.startswith("/*"):
            out.add(i)
            inside = "*/" not in s[2:]
    return out


def is_trivial(text: str, min_chars: int) -> bool:
    """Too short to mean anything: under min_chars, no identifier or number, or a lone keyword."""
    s = text.strip()
    if len(s) < min_chars or not re.search(r"[A-Za-z0-9]", s):
        return True
    return bool(re.fullmatch(r"[A-Za-z_]+[:;]?", s)) and s.rstrip(":;") in _TRIVIAL_WORDS


def code_lines(source: str, language: str | None, min_chars: int) -> list[int]:
    """1-based numbers of the lines that may be targets (see the module docstring)."""
    lines = source.split("\n")
    skip = _python_string_lines(source) if language == "python" else set()
    if "*" in _comment_prefixes(language):
        skip |= _block_comment_lines(lines)
    prefixes = _comment_prefixes(language)
    keep = []
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if i in skip or not s or (prefixes and s.startswith(prefixes)) or is_trivial(s, min_chars):
            continue
        keep.append(i)
    return keep


def internal_apis(files: dict[str, str]) -> frozenset[str]:
    """Functions, methods and classes the tenant defines (Python by AST, others by
    declaration patterns), minus dunders, builtins, builtin types' method names
    and names under 3 characters."""
    names: set[str] = set()
    for path, text in files.items():
        if language_of(path) == "python":
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
            names.update(n.name for n in ast.walk(tree)
                         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
        else:
            names.update(_DEF_NAME.findall(text))
            names.update(_METHOD_DECL.findall(text))
    # Names a call would share with builtins or builtin types' methods (`d.get(`, `s.split(`)
    # say nothing about the tenant's code even when the tenant defines a method of that name.
    noise = set(dir(builtins)) | set(keyword.kwlist) | {"main", "self", "this", "new"}
    for t in (dict, list, str, set, bytes, tuple, int, float, object):
        noise |= set(dir(t))
    return frozenset(n for n in names if len(n) >= 3 and not n.startswith("__") and n not in noise)


def matching_paren(text: str, start: int) -> int | None:
    """Index of the `)` closing the `(` just before `start`, on this text, or None.
    Quotes are skipped so a `)` inside a string literal does not close the call."""
    depth, quote, i = 1, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i if ch == ")" else None
        i += 1
    return None


def _api_calls_in_line(line: str, apis: frozenset[str]) -> list[tuple[str, int, int]]:
    """(name, column after `(`, column of `)`) for one-line calls with non-empty arguments."""
    out = []
    for m in re.finditer(r"(?<![\w])([A-Za-z_]\w*)\s*\(", line):
        name = m.group(1)
        if name not in apis or _DEF_BEFORE.search(line[: m.start(1)]):
            continue
        close = matching_paren(line, m.end())
        # `...` or `*` as the arguments is a placeholder, not a use of the API
        if close is not None and re.search(r"[A-Za-z0-9]", line[m.end():close]):
            out.append((name, m.end(), close))
    return out


def _candidates(path: str, source: str, kind: str, apis: frozenset[str], min_chars: int,
                rng: random.Random) -> list[Task]:
    language = language_of(path)
    lines = source.split("\n")
    out = []
    for ln in code_lines(source, language, min_chars):
        line = lines[ln - 1]
        below = "\n".join([""] + lines[ln:])
        above = "\n".join(lines[: ln - 1])
        if kind == "next_line":
            if ln == 1:
                continue
            out.append(Task(f"{path}:{ln}:next_line", kind, path, language, ln, None,
                            above, below, line.rstrip()))
        elif kind == "rest_of_line":
            body = line.rstrip()
            indent = len(body) - len(body.lstrip())
            lo, hi = indent + 1, len(body) - 3  # at least one typed char, at least 3 to go
            if hi < lo:
                continue
            col = rng.randint(lo, hi)
            target = body[col:]
            if not re.search(r"[A-Za-z0-9]", target):
                continue
            prefix = (above + "\n" if ln > 1 else "") + body[:col]
            out.append(Task(f"{path}:{ln}:{col}:rest_of_line", kind, path, language, ln, col,
                            prefix, below, target))
        elif kind == "api_args":
            for name, col, close in _api_calls_in_line(line, apis):
                prefix = (above + "\n" if ln > 1 else "") + line[:col]
                out.append(Task(f"{path}:{ln}:{col}:api_args", kind, path, language, ln, col,
                                prefix, below, line[col:close], api=name))
    return out


def make_tasks(files: dict[str, str], heldout: list[str], apis: frozenset[str], *, n: int,
               kinds: tuple[str, ...] = KINDS, seed: int = 0, min_target_chars: int = 6) -> list[Task]:
    """Up to `n` tasks from the held-out files, spread evenly over `kinds` (a kind
    with too few candidates leaves its share to the others), in a seeded order."""
    if n <= 0:
        raise ValueError("n must be positive")
    rng = random.Random(seed)
    pools: dict[str, list[Task]] = {}
    for kind in kinds:
        pool = []
        for path in sorted(heldout):
            pool.extend(_candidates(path, files[path], kind, apis, min_target_chars, rng))
        rng.shuffle(pool)
        pools[kind] = pool
    chosen: list[Task] = []
    active = [k for k in kinds if pools[k]]
    while len(chosen) < n and active:
        for kind in list(active):  # round robin keeps the kinds balanced
            if len(chosen) >= n:
                break
            if pools[kind]:
                chosen.append(pools[kind].pop())
            else:
                active.remove(kind)
    return chosen


def extract_prediction(task: Task, inserted: str) -> str:
    """Cut what a completion inserts at the task's cursor (codetailor.completion's `finish`) to the
    task's target: the first line, or a call's arguments."""
    first = inserted.split("\n", 1)[0]
    if task.kind == "api_args":
        close = matching_paren(first, 0)
        return first[:close] if close is not None else first.rstrip()
    return first.rstrip()
