"""Secret detection with detect-secrets (its default plugins and filters).

A file in which any plugin finds a potential secret is skipped whole: it never
reaches an index, a training set or a prompt.

The full scan costs tens of milliseconds per file (each line goes through every
plugin and filter in Python), so a cheap prefilter runs first over the whole text
with detect-secrets' own patterns: a plugin can only report a line that one of its
patterns matches, so a file none of them matches cannot hold a secret and skips
the full scan. Per plugin kind:

- regex detectors (AWS, GitHub, private keys, JWT, ...): their own compiled
  patterns, searched over the whole text with `^`/`$` matching at every line;
- the keyword detector: its own assignment patterns for the file's type (the ones
  it picks by file name), run only over the lines holding one of its deny-listed
  words, case-insensitive; most mentions of "secret" or "password" in code are not
  an assignment of a quoted value and no longer cost the file a full scan;
- the high-entropy string detectors: their own quoted-string pattern (its charset
  excludes newlines, so whole-text matches are the per-line ones) and their own
  entropy function and limit;
- a pattern that starts with a class or an alternation but holds a literal verbatim (`AKC`,
  `-us`, `cloudant`, ...: `_LITERALS`) runs only on a text holding that literal (lowercased
  for a case-insensitive pattern, and then only over ASCII text);
- the case-insensitive service patterns (IBM, Cloudant, Softlayer, AWS secret key)
  cost milliseconds per file each, so each runs only when the lowercased text holds
  a word its pattern cannot match without: a mandatory `(?:key|pwd|password|pass|
  token)` group needs "key", "pw", "pass" or "token" (`_GATES`, applied only when
  the pattern holds the marker verbatim), and then only over the lines holding
  such a word (detect-secrets matches line by line);
- a file detect-secrets transforms (YAML, INI-like config: values get quoted before
  the plugins run; the eager INI reader accepts many C headers too) is scanned as
  those transformed lines as well: the same checks run over each transformed text,
  and a transformed line holding a line break, or a transformer failing in an
  unforeseen way, sends the file to the full scan;
- a plugin of a kind not listed always sends every file to the full scan.

A large source runs the whole per-file check, prefilter and full scan included, on every
core (selection.py, scan_pool.py).
"""

from __future__ import annotations

import io
import re
import threading
from functools import lru_cache
from pathlib import Path

_lock = threading.Lock()  # detect-secrets keeps its settings in a global


def has_secret(path: Path | str) -> bool:
    """The full detect-secrets scan of one file."""
    from detect_secrets.core import scan
    from detect_secrets.settings import default_settings

    with _lock, default_settings():
        for _ in scan.scan_file(str(path)):
            return True
    return False


# marker in a pattern -> words (lowercase) one of which any match must contain
_GATES = (
    ("(?:key|pwd|pw|password|pass|token)", ("key", "pw", "pass", "token")),
    ("(?:key|pwd|password|pass|token)", ("key", "pw", "pass", "token")),
    ("(?:secret[-_]?(?:access)?[-_]?key)", ("secret",)),
    ("aws.{0,20}?", ("aws",)),
)


# marker in a pattern -> a literal every match holds verbatim: a text without it skips the regex
# (Python's re has no fast path for a pattern that starts with a class or an alternation)
_LITERALS = (
    (")AKC[", "AKC"), (")AP[", "AP"), ("-us[0-9]", "-us"), ("\\.cloudant\\.com", "cloudant"),
    ("xox(?:", "xox"), ("hooks\\.slack\\.com", "hooks"), ("api.softlayer.com", "softlayer"),
    ("k_live_", "k_live_"),
)


def _literal(regex: re.Pattern) -> tuple[str, bool] | None:
    """(literal, compare lowercased) for a pattern holding one of `_LITERALS`' markers."""
    for marker, literal in _LITERALS:
        if marker in regex.pattern:
            folded = bool(regex.flags & re.IGNORECASE)
            return (literal.lower() if folded else literal), folded
    return None


def _gate(pattern: str) -> tuple[str, ...]:
    for marker, words in _GATES:
        if marker in pattern:
            return words
    return ()


@lru_cache(maxsize=1)
def _prefilter():
    """(keyword regex, [(gate words, required literal, regex)], entropy plugins, complete): `complete` is False when a
    default plugin is of a kind the prefilter does not model; then every file takes the full scan."""
    from detect_secrets.plugins.keyword import DENYLIST
    from detect_secrets.settings import default_settings, get_plugins

    keyword = re.compile("|".join(w.lower() for w in DENYLIST))   # finds candidate lines in the lowercased text
    regexes, entropy, complete = [], [], True
    with _lock, default_settings():
        for plugin in get_plugins():
            kind = type(plugin).__name__
            if kind == "KeywordDetector":
                continue
            if hasattr(plugin, "denylist"):
                regexes += [(_gate(r.pattern), _literal(r), re.compile(r.pattern, r.flags | re.MULTILINE))
                            for r in plugin.denylist]
            elif hasattr(plugin, "regex") and hasattr(plugin, "entropy_limit"):
                entropy.append(plugin)
            else:
                complete = False
    return keyword, regexes, entropy, complete


def _transformed(name: str, text: str) -> list[str] | None:
    """The texts detect-secrets would scan besides the file's own lines (YAML, INI-like config
    rewritten with their values quoted), each as its lines joined by newlines; None when that
    cannot be told safely (a transformer failing in an unforeseen way, a line holding a break)."""
    from detect_secrets.transformers import get_transformed_file

    f = io.StringIO(text)
    f.name = name
    out = []
    for eager in (False, True):
        try:
            lines = get_transformed_file(f, use_eager_transformers=eager)
        except Exception:  # a transformer failing in an unforeseen way: be safe
            return None
        f.seek(0)
        if lines:
            stripped = [line.rstrip("\r\n") for line in lines]
            if any("\n" in line or "\r" in line for line in stripped):
                return None   # joining would split a line the detector sees whole
            out.append("\n".join(stripped))
    return out


def _line_at(text: str, i: int) -> tuple[int, int]:
    """Start and end (before its newline) of the line of `text` holding offset `i`."""
    end = text.find("\n", i)
    return text.rfind("\n", 0, i) + 1, len(text) if end == -1 else end


def _lines_holding(lowered: str, text: str, words: tuple[str, ...]) -> str:
    """The lines of `text` whose lowercase form holds one of `words`, joined by newlines."""
    spans = set()
    for w in words:
        i = lowered.find(w)
        while i != -1:
            start, end = _line_at(lowered, i)
            spans.add((start, end))
            i = lowered.find(w, end)
    return "\n".join(text[a:b] for a, b in sorted(spans))


def _keyword_patterns(name: str) -> tuple[re.Pattern, ...]:
    """The keyword detector's assignment patterns for a file called `name` (it picks them by type)."""
    from detect_secrets.plugins.keyword import QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, REGEX_BY_FILETYPE
    from detect_secrets.util.filetype import determine_file_type

    return tuple(REGEX_BY_FILETYPE.get(determine_file_type(name), QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP))


def _keyword_may_match(lowered: str, text: str, keyword: re.Pattern, patterns: tuple[re.Pattern, ...]) -> bool:
    """Could the keyword detector report a line of `text`? Only a line holding a deny-listed word can
    match one of its patterns; each such line is tried as detect-secrets tries it (right-stripped)."""
    end = 0
    for m in keyword.finditer(lowered):
        if m.start() < end:
            continue   # this line was tried already
        start, end = _line_at(lowered, m.start())
        line = text[start:end].rstrip()
        if "\r" in line or any(p.search(line) for p in patterns):
            return True   # a lone carriage return splits lines differently there: be safe
    return False


def may_hold_secret(name: str, text: str) -> bool:
    """False only when no detect-secrets plugin could report anything in `text` (file `name`)."""
    keyword, regexes, entropy, complete = _prefilter()
    if not complete:
        return True
    patterns = _keyword_patterns(name)
    if _may_match(text, keyword, patterns, regexes, entropy):
        return True
    transformed = _transformed(name, text)
    return transformed is None or any(_may_match(t, keyword, patterns, regexes, entropy) for t in transformed)


def _may_match(text: str, keyword, patterns, regexes, entropy) -> bool:
    """Could any plugin report a line of `text` (lines joined by newlines)?"""
    lowered = text.lower()
    aligned = len(lowered) == len(text)   # lower() changed no length: offsets agree
    keyword_hit = (_keyword_may_match(lowered, text, keyword, patterns) if aligned
                   else keyword.search(lowered))   # offsets disagree: any deny-listed word is a hit
    if keyword_hit:
        return True
    ascii_only = text.isascii()            # case-insensitive matches are then exactly lower()'s
    for gate, literal, regex in regexes:
        if literal is not None and (ascii_only or not literal[1]):
            if literal[0] not in (lowered if literal[1] else text):
                continue
        if not gate or not aligned:
            if regex.search(text):
                return True
            continue
        lines = _lines_holding(lowered, text, gate)
        if lines and regex.search(lines):
            return True
    for plugin in entropy:
        shortest = 2 ** plugin.entropy_limit   # entropy <= log2(length): shorter strings cannot pass
        for m in plugin.regex.finditer(text):
            value = m.group(2)
            if len(value) > shortest and plugin.calculate_shannon_entropy(value) > plugin.entropy_limit:
                return True
    return False
