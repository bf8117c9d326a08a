"""The one prompt format shared by training, evaluation and serving.

SmolLM2 saw code from several files of one repository in pretraining laid out
with The Stack's repository tokens:

    <repo_name>{repo}<file_sep>{path}\n{code}<file_sep>{path}\n{code}...

A completion prompt uses exactly that layout. Retrieved snippets come first,
one pseudo-file each, best-ranked last (nearest the cursor, where a left-to-right
model attends most); the file being edited comes last and ends at the cursor:

    <repo_name>{repo}
    <file_sep>{path}{DEFINITIONS_MARK}\n{signatures}           (optional)
    <file_sep>{snippet path}:{start}-{end}\n{snippet text}     (worst ... best)
    <file_sep>{path}{SUFFIX_MARK}\n{suffix}                    (optional)
    <file_sep>{path}\n{prefix}                                  <- model continues

Definitions the cursor's code uses (retrieval/symbol_context.py resolves them from
the request) are shown as one pseudo-file of their signatures and first doc lines,
no bodies, grouped by the file they live in (a comment line names it) with members
under their class: what a call site needs, in far fewer tokens than the code.

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
last lines, the ones next to the cursor), then the suffix, then the best
definitions that fit (the weakest dropped first, counted), then snippets in rank
order while they fit; whatever is left returns to the prefix. Pieces are measured
separately with the tokenizer's own count (the separators are single special
tokens, so the sum matches the whole).

Templates. The layout above is the "text" layout, one per family; a family with
fill-in-the-middle tokens also has a "native" layout (Qwen2.5-Coder's repository
and FIM tokens), where the code after the cursor follows the prefix instead:

    <|repo_name|>{repo}\n
    <|file_sep|>{path}{DEFINITIONS_MARK}\n{signatures}\n          (optional)
    <|file_sep|>{snippet path}:{start}-{end}\n{snippet text}\n   (worst ... best)
    <|file_sep|>{path}\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}\n<|fim_middle|>

Each template names the special tokens that end a completion in its family
(resolved to ids against the model's tokenizer, see codetailor.model), so the
engine stops at them instead of writing on into another pseudo-file. Token
healing applies in both layouts: the partial word leaves the prefix, whose end is
the point the model continues from in either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Literal, Sequence

from codetailor.errors import PromptTooLong

REPO_NAME = "<repo_name>"
FILE_SEP = "<file_sep>"
SUFFIX_MARK = " (after cursor)"
DEFINITIONS_MARK = " (definitions used)"
_SNIPPET_HEADER = re.compile(r"^(?P<path>.*):(?P<start>\d+)-(?P<end>\d+)$")

TokenCounter = Callable[[str], int]

Layout = Literal["text", "native"]


@dataclass(frozen=True)
class Template:
    """How one family's prompts are laid out and where its completions end."""

    family: str
    layout: Layout
    repo_name: str = REPO_NAME
    file_sep: str = FILE_SEP
    fim: tuple[str, str, str] | None = None  # prefix, suffix, middle tokens (native layout)
    stop_tokens: tuple[str, ...] = ()        # special tokens that end a completion
    stop_token_ids: tuple[int, ...] = ()     # their ids in the model's vocabulary (codetailor.model)
    heals: bool = True                       # token healing applies to mid-line cursors

    @property
    def name(self) -> str:
        return f"{self.family}/{self.layout}"

    @property
    def is_fim(self) -> bool:
        return self.fim is not None

    def head(self, repo: str) -> str:
        return f"{self.repo_name}{repo}" + ("\n" if self.is_fim else "")

    def piece(self, header: str, body: str) -> str:
        """A pseudo-file: a retrieved snippet, or (text layout) the code after the cursor."""
        return f"{self.file_sep}{header}\n{body.rstrip(chr(10))}\n"

    def file_open(self, path: str) -> str:
        return f"{self.file_sep}{path}\n" + (self.fim[0] if self.is_fim else "")

    def heal(self, prefix: str) -> tuple[str, str]:
        return heal(prefix) if self.heals else (prefix, "")


TEXT = Template(family="any", layout="text")
_QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
                 "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
TEMPLATES: dict[tuple[str, str], Template] = {
    # SmolLM2 read The Stack's repository tokens in pretraining: its text layout is its native one.
    ("smollm2", "text"): Template("smollm2", "text",
                                  stop_tokens=("<|endoftext|>", "<|im_end|>", REPO_NAME, FILE_SEP)),
    # Qwen's text layout spells SmolLM2's repository tokens as plain text (no single tokens there).
    ("qwen2.5-coder", "text"): Template("qwen2.5-coder", "text", stop_tokens=_QWEN_SPECIAL),
    ("qwen2.5-coder", "native"): Template("qwen2.5-coder", "native", repo_name="<|repo_name|>",
                                          file_sep="<|file_sep|>",
                                          fim=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                                          stop_tokens=_QWEN_SPECIAL),
}
# The family's layout when `prompt.template` is "auto". Qwen's is a small measurement so far
# (docs/evaluation.md); decide at scale before trusting it.
DEFAULT_LAYOUT: dict[str, Layout] = {"smollm2": "text", "qwen2.5-coder": "text"}
# The special tokens that identify a family in a checkpoint's tokenizer, most specific first.
FAMILY_TOKENS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("qwen2.5-coder", ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>")),
    ("smollm2", (REPO_NAME, FILE_SEP)),
)


def template_for(family: str, layout: str = "auto") -> Template:
    """The template of `family` in `layout` ("auto" = the family's default); ValueError if none."""
    if layout == "auto":
        layout = DEFAULT_LAYOUT.get(family, "text")
    found = TEMPLATES.get((family, layout))
    if found is None:
        have = sorted(l for f, l in TEMPLATES if f == family)
        raise ValueError(f"the {family} family has no {layout!r} prompt template"
                         + (f" (it has: {', '.join(have)})" if have else ""))
    return found


def family_from_tokens(special_tokens) -> str | None:
    """The family whose identifying special tokens a tokenizer has, or None."""
    have = set(special_tokens)
    return next((family for family, need in FAMILY_TOKENS if have.issuperset(need)), None)


@dataclass(frozen=True)
class Snippet:
    path: str
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str


@dataclass(frozen=True)
class Signature:
    """A definition as a prompt shows it: its header and first doc line, no body."""

    name: str
    signature: str                 # one line
    path: str                      # the file it is defined in
    doc: str = ""
    container: str | None = None   # enclosing class (or Go receiver type)
    language: str = ""


@dataclass(frozen=True)
class PromptParts:
    path: str
    prefix: str
    suffix: str = ""
    snippets: tuple[Snippet, ...] = ()   # best first
    repo: str = "repo"
    definitions: tuple[Signature, ...] = field(default=(), kw_only=True)   # best first


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    parts: PromptParts             # what was kept after trimming
    dropped_snippets: int = 0
    trimmed_prefix_lines: int = 0
    tokens: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    dropped_definitions: int = field(default=0, kw_only=True)


def _header(s: Snippet) -> str:
    return f"{s.path}:{s.start_line}-{s.end_line}"


def render(parts: PromptParts, template: Template = TEXT) -> str:
    """Lay out the parts, untrimmed. The text layout ends exactly at the cursor; the native
    layout ends at the FIM middle token, the suffix standing between."""
    out = [template.head(parts.repo)]
    if parts.definitions:
        out.append(template.piece(f"{parts.path}{DEFINITIONS_MARK}", render_definitions(parts.definitions)))
    for s in reversed(parts.snippets):  # best-ranked last
        out.append(template.piece(_header(s), s.text))
    if template.is_fim:
        out.append(f"{template.file_open(parts.path)}{parts.prefix}{template.fim[1]}{_fim_suffix(parts.suffix)}"
                   f"{template.fim[2]}")
        return "".join(out)
    if parts.suffix:
        out.append(template.piece(f"{parts.path}{SUFFIX_MARK}", parts.suffix))
    out.append(f"{template.file_open(parts.path)}{parts.prefix}")
    # The first piece carries no trailing newline: "<repo_name>repo" then "<file_sep>".
    return "".join(out)


def _fim_suffix(suffix: str) -> str:
    """The suffix as a FIM model saw it in training: file text, so its last line ends with a newline.
    Without it Qwen2.5-Coder reads the suffix as unfinished and continues it instead of filling the
    middle (tests/engine/test_qwen_generate.py)."""
    return suffix + "\n" if suffix else ""


def parse(text: str, template: Template = TEXT) -> PromptParts:
    """Inverse of `render` (for tests and debugging)."""
    if not text.startswith(template.repo_name):
        raise ValueError(f"not a codetailor prompt: missing {template.repo_name}")
    suffix = ""
    if template.is_fim:
        fim_prefix, fim_suffix, fim_middle = template.fim
        if not text.endswith(fim_middle) or text.count(fim_prefix) != 1:
            raise ValueError("not a codetailor fill-in-the-middle prompt")
        text, _, suffix = text[: -len(fim_middle)].rpartition(fim_suffix)
        suffix = suffix[:-1] if suffix.endswith("\n") else suffix   # the newline _fim_suffix adds
        text = text.replace(fim_prefix, "", 1)
    pieces = text[len(template.repo_name):].split(template.file_sep)
    repo, files = pieces[0], pieces[1:]
    if template.is_fim:
        repo = repo[:-1] if repo.endswith("\n") else repo
    if not files:
        raise ValueError("not a codetailor prompt: no file")
    snippets, definitions = [], ()
    *context, current = files
    path, _, prefix = current.partition("\n")
    for piece in context:
        head, _, body = piece.partition("\n")
        body = body[:-1] if body.endswith("\n") else body
        if not template.is_fim and head.endswith(SUFFIX_MARK) and head[: -len(SUFFIX_MARK)] == path:
            suffix = body
            continue
        if head == f"{path}{DEFINITIONS_MARK}":
            definitions = _read_definitions(body)
            continue
        m = _SNIPPET_HEADER.match(head)
        if not m:
            raise ValueError(f"bad snippet header {head!r}")
        snippets.append(Snippet(m["path"], int(m["start"]), int(m["end"]), body))
    return PromptParts(path=path, prefix=prefix, suffix=suffix, snippets=tuple(reversed(snippets)), repo=repo,
                       definitions=definitions)


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
    template: Template = TEXT,
) -> BuiltPrompt:
    """Fit the parts into `budget` tokens and render them.

    Raises PromptTooLong when even the line holding the cursor does not fit.
    """
    parts = replace(parts, suffix=_limit_suffix(parts.suffix, max_suffix_lines))
    overhead = count(template.head(parts.repo) + template.file_open(parts.path)) + 1
    if template.is_fim:
        overhead += count(template.fim[1] + template.fim[2])
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
        cost = count(_fim_suffix(suffix) if template.is_fim else template.piece(f"{parts.path}{SUFFIX_MARK}", suffix))
        if cost <= left:
            left -= cost
        else:
            suffix = ""
    definitions, dropped_definitions = (), 0
    if parts.definitions:
        definitions, left = fit_definitions(
            parts.definitions, lambda text: count(template.piece(f"{parts.path}{DEFINITIONS_MARK}", text)), left)
        dropped_definitions = len(parts.definitions) - len(definitions)
    kept: list[Snippet] = []
    for s in parts.snippets:
        cost = count(template.piece(_header(s), s.text))
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
    final = replace(parts, prefix=prefix, suffix=suffix, snippets=tuple(kept), definitions=definitions)
    text = render(final, template)
    return BuiltPrompt(
        text=text,
        parts=final,
        dropped_snippets=len(parts.snippets) - len(kept),
        trimmed_prefix_lines=keep_from,
        tokens=count(text),
        dropped_definitions=dropped_definitions,
    )


# -- definitions: the compact pseudo-file --------------------------------------------------------------------

_COMMENT = {"python": "#"}


def render_definitions(defs: Sequence[Signature]) -> str:
    """Signatures and first doc lines grouped by file (a comment line names it), members
    under their class's header, no bodies; files in the order of their best definition."""
    if not defs:
        return ""
    c = _COMMENT.get(defs[0].language, "//")
    by_path: dict[str, list[Signature]] = {}
    for d in defs:
        by_path.setdefault(d.path, []).append(d)
    out = []
    for path, group in by_path.items():
        out.append(f"{c} {path}")
        # one entry per top-level name, in rank order; members follow their class's header
        entries: dict[str, tuple[list, list]] = {}
        for d in group:
            header, members = entries.setdefault(d.container or d.name, ([], []))
            if d.container:
                members.append(d)
            elif not header:
                header.append(d)
        for key, (header, members) in entries.items():
            if header:
                out.append(_definition_line(header[0], c))
            elif members:   # a class none of whose own header was picked: name it
                word = "type" if members[0].language == "go" else "class"
                out.append(f"{word} {key}" + (":" if c == "#" else ""))
            out.extend("    " + _definition_line(m, c) for m in members)
    return "\n".join(out) + "\n"


def fit_definitions(defs: Sequence[Signature], cost: TokenCounter, room: int) -> tuple[tuple[Signature, ...], int]:
    """The best definitions whose pseudo-file costs at most `room` tokens (`cost` of its
    rendered text), and the room left: the weakest are dropped first."""
    for n in range(len(defs), 0, -1):
        spent = cost(render_definitions(defs[:n]))
        if spent <= room:
            return tuple(defs[:n]), room - spent
    return (), room


def definitions_from(defs: Sequence[object]) -> tuple[Signature, ...]:
    """Adapt resolved definitions (objects with name/signature/path/doc/container/language,
    retrieval.symbols.Definition) to signatures."""
    return tuple(Signature(d.name, d.signature, d.path, d.doc, d.container, d.language) for d in defs)


def _definition_line(d: Signature, c: str) -> str:
    return f"{d.signature}  {c} {d.doc}" if d.doc else d.signature


def _read_definitions(body: str) -> tuple[Signature, ...]:
    """The definitions pseudo-file read back (tests, debugging): enough to render the same
    text again. A header keeps its line as its name, the key its members are grouped by."""
    out, path, header = [], "", ""
    c = "#" if body.startswith("# ") else "//"
    language = "python" if c == "#" else ""
    for line in body.split("\n"):
        if line.startswith(f"{c} "):
            path = line[len(c) + 1:]
            continue
        signature, _, doc = line.strip().partition(f"  {c} ")
        if line.startswith("    "):
            out.append(Signature(signature, signature, path, doc, header, language))
        else:
            header = line
            out.append(Signature(line, signature, path, doc, None, language))
    return tuple(out)


def cursor_parts(source: str, line: int, column: int | None = None) -> tuple[str, str]:
    """Split a file's text at a cursor (1-based line, 0-based column; no column = line start).

    At a line start the prefix ends at the end of the previous line *without* its
    newline: the model emits the newline itself (BPE merges make a prompt that ends
    in "\\n" awkward). codetailor.completion owns that rule (`Cursor.in_file` gives the
    editor's text before the cursor, newline included, and its kind).
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


# \Z, not $: "$" also matches before a final newline, which would take the newline off with the word.
_PARTIAL_WORD = re.compile(r" ?[A-Za-z0-9_]+\Z")


def heal(prefix: str) -> tuple[str, str]:
    """Token healing's split of a mid-line cursor: (the prefix without the partial word at
    its end, that partial word). The word keeps one space before it when there is one (" ite"):
    byte-level BPE gives a word its leading space and leaves the rest of an indentation to the
    newline's token ("\n   ", " return"), so the prompt then ends where the tokenizer would
    cut anyway. The engine then makes the
    completion start with the partial word (engine/token_healing.py) and returns what follows
    it. A prefix that ends in no word is returned whole, with "". Not for a cursor at a line
    start (codetailor.completion): there the prompt ends at the previous line on purpose."""
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

