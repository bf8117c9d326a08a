"""One completion, from an editor's cursor to the text inserted there.

Serving (serving/ingress.py), evaluation (evaluation/runner.py), `codetailor
generate` and training's examples (training/examples.py) all go through here, so
a cursor becomes the same prompt and a model's output the same insertion in every
stage. `prompt_format` lays the parts out; this module decides what the parts are:

- The cursor's kind. At a line start the prompt ends at the end of the previous
  line, without its newline, and the model emits the newline itself (byte-level BPE
  rarely sees a prompt end in "\\n" followed by the line's indentation). Whatever
  the model writes before its first newline then cannot go at the cursor: the
  insertion is what follows that newline (`Prompt.finish`). Inside a line, token
  healing takes the partial word off the prompt (`prompt_format.heal`); the engine
  spells it first and returns what follows. A cursor's kind is given, or inferred
  from its prefix: one that ends in a newline after some text is at a line start.
- The budget (`prompt_budget`): the prompt and the completion share the context,
  and the prompt never exceeds `prompt.budget_tokens`; the whole prompt's measured
  count is what must fit (`prompt`), not the sum of its pieces.
- The insertion: after the line-start rule, the completion stops where it starts to
  repeat the code after the cursor (`prompt_format.cut_at_suffix`). A stream
  (`Prompt.stream`) sends exactly the same text, whatever the chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from codetailor.prompt_format import (TEXT, BuiltPrompt, PromptParts, Signature, Snippet, Template, TokenCounter,
                                      build, cursor_parts, cut_at_suffix, query_lines)
from codetailor.errors import PromptTooLong

CursorKind = Literal["line_start", "mid_line"]
CURSOR_KINDS: tuple[CursorKind, ...] = ("line_start", "mid_line")


def infer_kind(prefix: str) -> CursorKind:
    """The kind of a cursor that did not say: a prefix ending in a newline after some text is
    an editor at a line start (a prefix of blank lines alone is sent to the model as it is)."""
    return "line_start" if prefix.endswith("\n") and prefix.strip() else "mid_line"


@dataclass(frozen=True)
class Cursor:
    """Where the completion goes: the file's text before and after the cursor, exactly."""

    prefix: str
    suffix: str = ""
    path: str = "untitled"
    kind: CursorKind | None = None   # None: inferred from the prefix (`infer_kind`)

    def __post_init__(self):
        if self.kind is not None and self.kind not in CURSOR_KINDS:
            raise ValueError(f"unknown cursor kind {self.kind!r} (known: {', '.join(CURSOR_KINDS)})")
        if self.kind == "line_start" and self.prefix and not self.prefix.endswith("\n"):
            raise ValueError("a cursor at a line start needs a prefix that is empty or ends with a newline")

    @classmethod
    def in_file(cls, source: str, line: int, column: int | None = None, path: str = "untitled") -> "Cursor":
        """The cursor at a 1-based line and 0-based column (none or 0: the line start) of a file's text;
        ValueError when the position is outside it."""
        prefix, suffix = cursor_parts(source, line, column)
        if column is None:
            prefix += "\n" if line > 1 else ""
        return cls(prefix, suffix, path, "line_start" if not column else "mid_line")

    def query(self, lines: int) -> str:
        """The retrieval query the cursor implies: the last `lines` lines above it, the partial word
        included (training's neighbours and serving's retrieval search with the same text)."""
        return query_lines(self.prefix[:-1] if self.opens_line else self.prefix, lines)

    @property
    def resolved_kind(self) -> CursorKind:
        return self.kind or infer_kind(self.prefix)

    @property
    def opens_line(self) -> bool:
        """Whether the prompt ends at the previous line and the model must open the cursor's line."""
        return self.resolved_kind == "line_start" and self.prefix.endswith("\n")


def prompt_budget(budget_tokens: int, context_tokens: int, completion_tokens: int) -> int:
    """Tokens the prompt may take: at most `budget_tokens` (prompt.budget_tokens), and room left in
    the context (the engine's max_model_len, training's seq_len) for `completion_tokens`."""
    return min(budget_tokens, context_tokens - completion_tokens)


@dataclass(frozen=True)
class Finished:
    text: str    # what goes at the cursor
    cut: bool    # it stopped where it began to repeat the code after the cursor


@dataclass(frozen=True)
class Prompt:
    """A cursor laid out for the model, and how to turn what the model writes into the insertion."""

    built: BuiltPrompt
    heal: str                        # the partial word the completion must spell first (engine's `heal`)
    opens_line: bool
    stop_token_ids: tuple[int, ...]  # the template's stop tokens

    @property
    def text(self) -> str:
        return self.built.text

    @property
    def tokens(self) -> int:
        return self.built.tokens

    @property
    def suffix(self) -> str:
        """The code after the cursor that the prompt kept."""
        return self.built.parts.suffix

    @property
    def snippets(self) -> tuple[Snippet, ...]:
        return self.built.parts.snippets

    @property
    def definitions(self) -> tuple[Signature, ...]:
        """The definitions the prompt kept (the weakest go first when the budget is short)."""
        return self.built.parts.definitions

    @property
    def dropped_definitions(self) -> int:
        return self.built.dropped_definitions

    def target(self, insertion: str) -> str:
        """What the model writes after this prompt for `insertion` to go at the cursor (training's
        target): the newline that opens the cursor's line, the healed word, then the insertion."""
        return ("\n" if self.opens_line else "") + self.heal + insertion

    def finish(self, raw: str) -> Finished:
        """The insertion for the engine's whole text (which omits the healed word)."""
        text = _after_line_start(raw) if self.opens_line else raw
        if text is None:
            return Finished("", False)
        cut = cut_at_suffix(text, self.suffix)
        return Finished(cut, cut != text)

    def stream(self) -> "CompletionStream":
        return CompletionStream(self)


def _after_line_start(raw: str) -> str | None:
    """What follows the model's first newline (None before it has written one)."""
    head, sep, rest = raw.partition("\n")
    return rest if sep else None


def _first_code_line(suffix: str) -> str | None:
    first = next((line.strip() for line in suffix.split("\n") if line.strip()), "")
    return first if len(first) >= 4 else None   # as cut_at_suffix: a short line repeats by chance


class CompletionStream:
    """`Prompt.finish` for text that arrives in pieces: `feed` returns the text that is certain
    to begin the insertion whatever follows, and whether the completion is over (it began to
    repeat the code after the cursor: stop the generation); `close` returns the rest once the
    engine is done. Together they send exactly `finish` of the whole text, for any chunking.

    What is held back: at a line start, everything until the model's first newline; trailing
    whitespace (a cut drops it); and a later line while it may still become the suffix's first
    line. The cursor's own line and anything that cannot be a cut stream as they come."""

    def __init__(self, prompt: Prompt):
        self.prompt = prompt
        self.cut_on = _first_code_line(prompt.suffix)
        self.raw = ""
        self.sent = 0
        self.done = False
        self.cut = False   # the insertion stopped where it began to repeat the code after the cursor

    def feed(self, delta: str) -> tuple[str, bool]:
        if self.done:
            return "", True
        self.raw += delta
        text = _after_line_start(self.raw) if self.prompt.opens_line else self.raw
        if text is None:
            return "", False
        lines = text.split("\n")
        for i in range(1, len(lines) - 1):   # complete lines after the first
            if self.cut_on is not None and lines[i].strip() == self.cut_on:
                self.done = self.cut = True
                return self._send("\n".join(lines[:i]).rstrip()), True
        certain = text
        last = lines[-1].lstrip()
        if len(lines) > 1 and self.cut_on is not None and \
                (self.cut_on.startswith(last) or last.rstrip() == self.cut_on):
            certain = text[: len(text) - len(lines[-1]) - 1]   # the last line may still be a cut
        return self._send(certain.rstrip()), False

    def close(self) -> str:
        """The rest of the insertion once the engine's text is whole."""
        if self.done:
            return ""
        self.done = True
        whole = self.prompt.finish(self.raw)
        self.cut = whole.cut
        return self._send(whole.text)

    def _send(self, upto: str) -> str:
        out = upto[self.sent:]
        self.sent = max(self.sent, len(upto))
        return out


def _split(cursor: Cursor, prompt_cfg, template: Template) -> tuple[str, str]:
    """(the prompt's prefix, the partial word the completion spells first)."""
    if cursor.opens_line:
        return cursor.prefix[:-1], ""
    if prompt_cfg.token_healing:
        return template.heal(cursor.prefix)
    return cursor.prefix, ""


def lead(cursor: Cursor, prompt_cfg, template: Template = TEXT) -> str:
    """What the model writes after the cursor's prompt before the text that goes at the cursor:
    the newline that opens the cursor's line, or the healed partial word (`Prompt.target`)."""
    return "\n" if cursor.opens_line else _split(cursor, prompt_cfg, template)[1]


def prompt(cursor: Cursor, snippets: Sequence[Snippet], *, count: TokenCounter, budget: int,
           prompt_cfg, template: Template = TEXT, repo: str = "repo",
           definitions: Sequence[Signature] = ()) -> Prompt:
    """The prompt for `cursor` with `snippets` and the `definitions` it uses (each best first) in at
    most `budget` tokens, laid out in `template`. `prompt_cfg` is the `prompt` config section (suffix
    lines, prefix share, healing). Raises PromptTooLong when even the cursor's line does not fit."""
    prefix, partial = _split(cursor, prompt_cfg, template)
    parts = PromptParts(path=cursor.path, prefix=prefix, suffix=cursor.suffix, snippets=tuple(snippets), repo=repo,
                        definitions=tuple(definitions))
    goal = budget
    for _ in range(4):
        built = build(parts, count, goal, max_suffix_lines=prompt_cfg.max_suffix_lines,
                      min_prefix_share=prompt_cfg.min_prefix_share, template=template)
        if built.tokens <= budget:
            return Prompt(built, partial, cursor.opens_line, template.stop_token_ids)
        # The pieces are measured apart; merged, the whole can come out a few tokens longer.
        goal -= built.tokens - budget
    raise PromptTooLong(f"the prompt does not fit the {budget}-token prompt budget")

