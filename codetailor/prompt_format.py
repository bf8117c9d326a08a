"""The one prompt format shared by training, evaluation and serving.

SmolLM2 saw code from several files of one repository in pretraining laid out
with The Stack's repository tokens:

    <repo_name>{repo}<file_sep>{path}\n{code}<file_sep>{path}\n{code}...

A completion prompt uses exactly that layout. Retrieved snippets come first,
one pseudo-file each, best-ranked last (nearest the cursor, where a left-to-right
model attends most); the file being edited comes last and ends at the cursor:

    <repo_name>{repo}
    <file_sep>{snippet path}:{start}-{end}\n{snippet text}     (worst ... best)
    <file_sep>{path}{SUFFIX_MARK}\n{suffix}                    (optional)
    <file_sep>{path}\n{prefix}                                  <- model continues

Fill-in-the-middle substitute. The model has no FIM tokens, so the code after
the cursor (its first `max_suffix_lines` lines) is shown *before* the file as a
pseudo-file named `{path}{SUFFIX_MARK}`. The model then writes the middle
left to right having seen what follows; training lays examples out the same way,
so an adapter learns to use it. Completions are cut where the model starts to
repeat the suffix (see `cut_at_suffix`).

Token healing (`heal`): a cursor inside a word leaves that partial word out of
the prompt; the engine makes the completion spell it first (engine/token_healing.py)
and returns what follows it. Serving, evaluation and training all lay mid-line
cursors out this way (`prompt.token_healing`, on by default).

Token budget: the prefix keeps at least `min_prefix_share` of the budget (its
last lines, the ones next to the cursor), then the suffix, then snippets in rank
order while they fit; whatever is left returns to the prefix. Pieces are measured
separately with the tokenizer's own count (the separators are single special
tokens, so the sum matches the whole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from codetailor.errors import PromptTooLong

REPO_NAME = "<repo_name>"
FILE_SEP = "<file_sep>"
SUFFIX_MARK = " (after cursor)"
_SNIPPET_HEADER = re.compile(r"^(?P<path>.*):(?P<start>\d+)-(?P<end>\d+)$")

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Snippet:
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str


@dataclass(frozen=True)
class PromptParts:
    path: str
    prefix: str
    suffix: str = ""
    snippets: tuple[Snippet, ...] = ()   # best first
    repo: str = "repo"


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    parts: PromptParts             # what was kept after trimming
    dropped_snippets: int = 0
    trimmed_prefix_lines: int = 0
    tokens: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def _header(s: Snippet) -> str:
    return f"{s.path}:{s.start_line}-{s.end_line}"


def render(parts: PromptParts) -> str:
    """Lay out the parts, untrimmed. The text ends exactly at the cursor."""
    out = [f"{REPO_NAME}{parts.repo}"]
    for s in reversed(parts.snippets):  # best-ranked last
        out.append(f"{FILE_SEP}{_header(s)}\n{s.text.rstrip(chr(10))}\n")
    if parts.suffix:
        out.append(f"{FILE_SEP}{parts.path}{SUFFIX_MARK}\n{parts.suffix.rstrip(chr(10))}\n")
    out.append(f"{FILE_SEP}{parts.path}\n{parts.prefix}")
    # The first piece carries no trailing newline: "<repo_name>repo" then "<file_sep>".
    return "".join(out)


def parse(text: str) -> PromptParts:
    """Inverse of `render` (for tests and debugging)."""
    if not text.startswith(REPO_NAME):
        raise ValueError("not a codetailor prompt: missing <repo_name>")
    pieces = text[len(REPO_NAME):].split(FILE_SEP)
    repo, files = pieces[0], pieces[1:]
    if not files:
        raise ValueError("not a codetailor prompt: no file")
    snippets, suffix = [], ""
    *context, current = files
    path, _, prefix = current.partition("\n")
    for piece in context:
        head, _, body = piece.partition("\n")
        body = body[:-1] if body.endswith("\n") else body
        if head.endswith(SUFFIX_MARK) and head[: -len(SUFFIX_MARK)] == path:
            suffix = body
            continue
        m = _SNIPPET_HEADER.match(head)
        if not m:
            raise ValueError(f"bad snippet header {head!r}")
        snippets.append(Snippet(m["path"], int(m["start"]), int(m["end"]), body))
    return PromptParts(path=path, prefix=prefix, suffix=suffix, snippets=tuple(reversed(snippets)), repo=repo)


def _limit_suffix(suffix: str, max_lines: int) -> str:
    if max_lines <= 0 or not suffix:
        return ""
    lines = suffix.split("\n")
    # The rest of the cursor's own line plus max_lines more.
    return "\n".join(lines[: max_lines + 1]).rstrip("\n")


def build(
    parts: PromptParts,
    count: TokenCounter,
    budget: int,
    *,
    max_suffix_lines: int = 8,
    min_prefix_share: float = 0.5,
) -> BuiltPrompt:
    """Fit the parts into `budget` tokens and render them.

    Raises PromptTooLong when even the line holding the cursor does not fit.
    """
    parts = replace(parts, suffix=_limit_suffix(parts.suffix, max_suffix_lines))
    overhead = count(f"{REPO_NAME}{parts.repo}{FILE_SEP}{parts.path}\n") + 1
    room = budget - overhead
    prefix_lines = parts.prefix.split("\n")
    line_tokens = [count(l + "\n") for l in prefix_lines]
    if room <= 0 or line_tokens[-1] > room:
        raise PromptTooLong(f"the cursor's line alone needs more than the {budget}-token prompt budget")

    # 1. The prefix's guaranteed share, from the cursor upwards.
    reserve = int(room * min_prefix_share)
    prefix_total = sum(line_tokens)
    prefix_budget = min(prefix_total, max(reserve, line_tokens[-1]))
    left = room - prefix_budget

    # 2. The suffix, then snippets in rank order, while they fit.
    suffix = parts.suffix
    if suffix:
        cost = count(f"{FILE_SEP}{parts.path}{SUFFIX_MARK}\n{suffix}\n")
        if cost <= left:
            left -= cost
        else:
            suffix = ""
    kept: list[Snippet] = []
    for s in parts.snippets:
        cost = count(f"{FILE_SEP}{_header(s)}\n{s.text.rstrip(chr(10))}\n")
        if cost <= left:
            kept.append(s)
            left -= cost
    # 3. Everything unused goes back to the prefix.
    prefix_budget += left
    keep_from, used = len(prefix_lines), 0
    while keep_from > 0 and used + line_tokens[keep_from - 1] <= prefix_budget:
        keep_from -= 1
        used += line_tokens[keep_from]
    prefix = "\n".join(prefix_lines[keep_from:])
    final = replace(parts, prefix=prefix, suffix=suffix, snippets=tuple(kept))
    text = render(final)
    return BuiltPrompt(
        text=text,
        parts=final,
        dropped_snippets=len(parts.snippets) - len(kept),
        trimmed_prefix_lines=keep_from,
        tokens=count(text),
    )


def cursor_parts(source: str, line: int, column: int | None = None) -> tuple[str, str]:
    """Split a file's text at a cursor (1-based line, 0-based column; no column = line start).

    At a line start the prefix ends at the end of the previous line *without* its
    newline: the model emits the newline itself (BPE merges make a prompt that ends
    in "\\n" awkward). Callers then strip the leading newline from the completion.
    """
    lines = source.split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is outside the file (1..{len(lines)})")
    if column is None:
        prefix = "\n".join(lines[: line - 1])
        return prefix, "\n".join(lines[line - 1:])
    cur = lines[line - 1]
    if not 0 <= column <= len(cur):
        raise ValueError(f"column {column} is outside line {line} (0..{len(cur)})")
    prefix = "\n".join(lines[: line - 1] + [cur[:column]])
    suffix = "\n".join([cur[column:]] + lines[line:])
    return prefix, suffix


_PARTIAL_WORD = re.compile(r" ?[A-Za-z0-9_]+$")


def heal(prefix: str) -> tuple[str, str]:
    """Token healing's split of a mid-line cursor: (the prefix without the partial word at
    its end, that partial word). The word keeps one space before it when there is one (" ite"):
    byte-level BPE gives a word its leading space and leaves the rest of an indentation to the
    newline's token ("\n   ", " return"), so the prompt then ends where the tokenizer would
    cut anyway. The engine then makes the
    completion start with the partial word (engine/token_healing.py) and returns what follows
    it. A prefix that ends in no word is returned whole, with "". Not for a cursor at a line
    start (see `cursor_parts`): there the prompt ends at the previous line on purpose."""
    m = _PARTIAL_WORD.search(prefix)
    if m is None:
        return prefix, ""
    return prefix[: m.start()], m.group(0)


def cut_at_suffix(completion: str, suffix: str) -> str:
    """Stop a completion where it starts to reproduce the code after the cursor."""
    first = next((l.strip() for l in suffix.split("\n") if l.strip()), "")
    if len(first) < 4:
        return completion
    lines = completion.split("\n")
    for i, l in enumerate(lines):
        if i > 0 and l.strip() == first:
            return "\n".join(lines[:i]).rstrip()
    return completion


def query_lines(prefix: str, n: int) -> str:
    """The retrieval query an editor's cursor implies: the last `n` lines above it."""
    return "\n".join(prefix.split("\n")[-n:])


def snippets_from(hits: Sequence[object]) -> tuple[Snippet, ...]:
    """Adapt retrieval hits (objects with path/start_line/end_line/text) to snippets."""
    return tuple(Snippet(h.path, h.start_line, h.end_line, h.text) for h in hits)


def completion_at_line_start(completion: str) -> str:
    """What to insert when the cursor sits at a line start (the prompt then ends at the
    end of the previous line, see `cursor_parts`). The model should open with the
    newline; if it first finishes the previous line instead, that part cannot be
    inserted at the cursor and is dropped."""
    head, sep, rest = completion.partition("\n")
    if not sep:
        return ""
    return rest
