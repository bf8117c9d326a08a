"""Training examples laid out exactly as serving lays out a request.

Each example is (prompt, completion): the prompt is what codetailor.completion
makes of a cursor in a training file (the module serving uses, in the base
model's template), the completion is what the model writes there for the code
that follows the cursor. The two are tokenized separately and concatenated,
because at serving time the prompt is tokenized alone and the model generates
from there; the loss covers only the completion tokens.

An epoch tiles every training file into consecutive completion spans, so each
line is a target once. A span's cursor is one of:
- "line":    at the start of the span's first line (prefix ends at the previous line, no newline)
- "midline": inside the first line (the rest of the line, then the span's other lines)
- "fim":     either cursor, with the code after the span as the suffix (the FIM substitute)
Spans outside the code the selection prefers (deprecated symbols, old lines) are
kept with probability `other_code_weight`.

With packing (training.packing, see training/packing.py) the plain cursors come
from "window" examples instead: each file as a few long sequences whose every
token is a target once. Only `cursor_fraction` of the spans still get a cursor
example, one a window cannot show: "fim" (the code after the cursor) or, with
neighbours, any kind with retrieved snippets.

A rag example also shows the definitions its cursor uses when the builder has a
`definitions` resolver (prompt.symbols): resolved from the cursor's prefix and
suffix as serving resolves an editor's, so the adapter learns to use them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Sequence

from codetailor import completion
from codetailor.errors import PromptTooLong
from codetailor.prompt_format import TEXT, Signature, Snippet, Template

from training.corpus import CorpusFile
from training.packing import LineIndex, window_bounds

# query text, the example's own path -> snippets best first (never from that path)
Neighbours = Callable[[str, str], Sequence[Snippet]]
# the editor's view of a cursor -> the definitions it uses, best first (retrieval/symbol_context.py)
Definitions = Callable[[completion.Cursor], Sequence[Signature]]
KINDS = ("line", "midline", "fim")
KIND_WEIGHTS = (0.4, 0.3, 0.3)
WINDOW = "window"


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]     # prompt tokens then completion tokens
    n_prompt: int
    origin: str              # "tenant" or "public"
    kind: str
    path: str
    rag: bool = False

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


@dataclass(frozen=True)
class Cursor:
    """A cursor in a training file and the code that goes there."""

    at: completion.Cursor    # the editor's view: text before and after, and the cursor's kind
    insertion: str           # what a perfect completion inserts at the cursor
    kind: str                # "line", "midline" or "fim"
    start_line: int
    end_line: int

    @property
    def path(self) -> str:
        return self.at.path


class ExampleBuilder:
    def __init__(self, tokenizer, prompt_cfg, seq_len: int, target_tokens: int,
                 neighbours: Neighbours | None = None, query_window: int = 10, *,
                 packing: bool = False, window_context: int = 64, cursor_fraction: float = 0.2,
                 template: Template = TEXT, definitions: Definitions | None = None):
        self.tok = tokenizer
        self.definitions = definitions
        self.prompt_cfg = prompt_cfg
        self.template = template   # the base model's prompt template (codetailor.model.prompt_template)
        self.seq_len = seq_len
        self.target_tokens = min(target_tokens, seq_len // 2)
        self.neighbours = neighbours
        self.query_window = query_window
        self.packing = packing
        self.window_context = window_context
        self.cursor_fraction = cursor_fraction
        self.count = lru_cache(maxsize=200_000)(lambda s: len(self.encode(s)))

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    # -- where the cursors go ------------------------------------------------------------
    def spans(self, f: CorpusFile, rng: random.Random) -> list[tuple[int, int]]:
        """Consecutive (start, end) line spans covering the file, each with a completion of
        a random size up to `target_tokens` (a line longer than that is one span)."""
        lines = f.text.split("\n")
        out, start = [], 1
        while start <= len(lines):
            cap = rng.randint(max(1, self.target_tokens // 2), self.target_tokens)
            end, used = start, self.count(lines[start - 1] + "\n")
            while end < len(lines) and used + self.count(lines[end] + "\n") <= cap:
                used += self.count(lines[end] + "\n")
                end += 1
            out.append((start, end))
            start = end + 1
        # Trailing blank spans teach nothing.
        return [(a, b) for a, b in out if any(l.strip() for l in lines[a - 1:b])]

    def cursor(self, f: CorpusFile, start: int, end: int, kind: str, rng: random.Random) -> Cursor:
        lines = f.text.split("\n")
        first = lines[start - 1]
        indent = len(first) - len(first.lstrip())
        column = None
        if kind == "midline" or (kind == "fim" and rng.random() < 0.5):
            if len(first) - indent >= 2:
                column = rng.randint(indent + 1, len(first) - 1)
            elif kind == "midline":
                kind = "line"
        if kind == "fim" and end >= len(lines) and column is None:
            kind = "line"   # nothing after the span: no suffix to show
        at = completion.Cursor.in_file(f.text, start, column, f.path)
        rest = "\n".join(lines[start:end])
        head = first if column is None else first[column:]
        insertion = head + ("\n" + rest if end > start else "")
        suffix = ""
        if kind == "fim":
            suffix = "\n".join(lines[end:])
            if column is not None and end == start and len(head) > 1 and rng.random() < 0.5:
                # The middle of a line: the rest of that line belongs to the suffix.
                cut = rng.randint(1, len(head) - 1)
                insertion, suffix = insertion[:cut], head[cut:] + ("\n" + suffix if end < len(lines) else "")
            if not suffix.strip():
                kind, suffix = ("midline" if column is not None else "line"), ""
        return Cursor(replace(at, suffix=suffix), insertion, kind, start, end)

    # -- one example -------------------------------------------------------------------
    def example(self, c: Cursor, origin: str, rag: bool = False) -> Example | None:
        """The cursor laid out as serving lays it out (codetailor.completion, in the builder's
        template); the target is what the model writes there: the newline that opens a line,
        a mid-line cursor's healed word, then the insertion."""
        target = self.encode(completion.lead(c.at, self.prompt_cfg, self.template) + c.insertion)
        target = target[: self.target_tokens]
        if not target:
            return None
        snippets: tuple[Snippet, ...] = ()
        if rag and self.neighbours is not None:
            query = c.at.query(self.query_window)
            if query.strip():
                snippets = tuple(s for s in self.neighbours(query, c.path) if s.path != c.path)
        defs: tuple[Signature, ...] = ()
        if rag and self.definitions is not None:
            defs = tuple(self.definitions(c.at))   # the whole cursor, as an editor sends it
        budget = completion.prompt_budget(self.prompt_cfg.budget_tokens, self.seq_len, len(target))
        try:
            prompt = completion.prompt(_trim_prefix(c.at, budget), snippets, count=self.count, budget=budget,
                                       prompt_cfg=self.prompt_cfg, template=self.template, definitions=defs)
        except PromptTooLong:
            return None
        ids = self.encode(prompt.text)
        if len(ids) + len(target) > self.seq_len:
            return None
        return Example(tuple(ids + target), len(ids), origin, c.kind, c.path,
                       bool(prompt.snippets or prompt.definitions))

    def file_examples(self, f: CorpusFile, origin: str, rng: random.Random, *, rag_fraction: float = 0.0,
                      other_weight: float = 1.0, max_examples: int | None = None) -> list[Example]:
        if self.packing:
            return self.packed_examples(f, origin, rng, rag_fraction=rag_fraction, other_weight=other_weight,
                                        max_examples=max_examples)
        out = []
        for start, end in self.spans(f, rng):
            if max_examples is not None and len(out) >= max_examples:
                break
            if not f.prefers(start, end) and rng.random() >= other_weight:
                continue
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            rag = self.neighbours is not None and rng.random() < rag_fraction
            ex = self.example(self.cursor(f, start, end, kind, rng), origin, rag)
            if ex is not None:
                out.append(ex)
        return out

    # -- packing -----------------------------------------------------------------------
    def header(self, path: str) -> list[int] | None:
        """The ids of the repository header and the file's opening in the builder's template (the
        family's repository layout, without fill-in-the-middle tokens: a window is plain code);
        None when that alone exceeds seq_len."""
        text = self.template.head("repo") + f"{self.template.file_sep}{path}\n"
        ids = self.encode(text)
        return ids if len(ids) <= self.seq_len else None

    def windows(self, f: CorpusFile, origin: str, rng: random.Random, other_weight: float = 1.0) -> list[Example]:
        """The file as packed windows (training/packing.py): each token a target once.
        A window whose target lines the selection does not prefer is kept with
        probability `other_weight`."""
        head = self.header(f.path)
        if head is None or len(head) >= self.seq_len:
            return []
        enc = self.tok(f.text, add_special_tokens=False, verbose=False,   # a whole file exceeds model_max_length
                       return_offsets_mapping=f.preferred is not None)
        ids = enc["input_ids"]
        lines = LineIndex(f.text, enc["offset_mapping"]) if f.preferred is not None else None
        out = []
        for ctx, start, end in window_bounds(len(ids), self.seq_len - len(head), self.window_context):
            if lines is not None and not f.prefers(*lines.lines(start, end)) and rng.random() >= other_weight:
                continue
            out.append(Example(tuple(head + ids[ctx:end]), len(head) + start - ctx, origin, WINDOW, f.path))
        return out

    def packed_examples(self, f: CorpusFile, origin: str, rng: random.Random, *, rag_fraction: float = 0.0,
                        other_weight: float = 1.0, max_examples: int | None = None) -> list[Example]:
        """Windows, plus a cursor example for `cursor_fraction` of the spans; with
        `max_examples`, a random sample of those (only the sampled cursors are built)."""
        windows: list = self.windows(f, origin, rng, other_weight)
        spans = [s for s in self.spans(f, rng)
                 if rng.random() < self.cursor_fraction and (f.prefers(*s) or rng.random() < other_weight)]
        if max_examples is not None and len(windows) + len(spans) > max_examples:
            chosen = rng.sample(windows + spans, max_examples)
            windows = [c for c in chosen if isinstance(c, Example)]
            spans = [c for c in chosen if not isinstance(c, Example)]
        out = list(windows)
        for start, end in spans:
            # Windows already train the plain cursors: a cursor example shows what they cannot,
            # retrieved neighbours (rag_fraction of them, any kind) or the code after the cursor.
            rag = self.neighbours is not None and rng.random() < rag_fraction
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0] if rag else "fim"
            ex = self.example(self.cursor(f, start, end, kind, rng), origin, rag)
            if ex is not None:
                out.append(ex)
        return out


def _trim_prefix(cursor: completion.Cursor, budget: int) -> completion.Cursor:
    """Drop prefix lines far beyond what the budget could hold before the prompt format measures
    each line (a token is at most a few dozen characters, so this never changes the result
    for code; it keeps example building linear in the file size)."""
    keep_chars = budget * 32
    if len(cursor.prefix) <= keep_chars:
        return cursor
    cut = cursor.prefix.find("\n", len(cursor.prefix) - keep_chars)
    if cut < 0:
        return cursor
    return replace(cursor, prefix=cursor.prefix[cut + 1:])
