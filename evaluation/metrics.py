"""Per-task metrics of one completion against the held-out source.

Every metric takes (prediction, reference) strings already cut to the task's
target (one line, or a call's arguments) and returns a number in [0, 1], or
None where the metric does not apply (CodeBLEU for a language the `codebleu`
package cannot parse). Aggregates are plain means over tasks, so the paired
per-task values the CQI uses are the same numbers the tables show.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from rapidfuzz.distance import Levenshtein

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CALL = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)\s*\(")

# Languages `codebleu` 0.7.0 knows AND whose tree-sitter grammar is in the project's pin set.
CODEBLEU_LANGUAGES = frozenset({"python", "java", "javascript", "go"})


def normalise(code: str) -> str:
    """Whitespace at the ends of the target and of each line carries no meaning
    for a suggestion; inner spacing and indentation inside it does."""
    return "\n".join(line.rstrip() for line in code.strip().split("\n"))


def exact_match(prediction: str, reference: str) -> float:
    return 1.0 if normalise(prediction) == normalise(reference) else 0.0


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    return float(Levenshtein.normalized_similarity(normalise(prediction), normalise(reference)))


def identifiers(code: str) -> list[str]:
    return _IDENT.findall(code)


def identifier_match(prediction: str, reference: str) -> float:
    """F1 of the identifier multisets: recall rewards naming what the source names,
    precision penalises inventing names. Two identifier-free strings match fully."""
    pred, ref = identifiers(prediction), identifiers(reference)
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    remaining = list(ref)
    common = 0
    for name in pred:
        if name in remaining:
            remaining.remove(name)
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def called_names(code: str) -> set[str]:
    """Names followed by `(`: calls and constructor uses (and, harmlessly, definitions)."""
    return set(_CALL.findall(code))


def api_calls(code: str, internal_apis: frozenset[str] | set[str]) -> set[str]:
    """The tenant's own functions and classes that `code` calls."""
    return called_names(code) & set(internal_apis)


class _QuietCodebleu(logging.Filter):
    # codebleu warns through the root logger for every reference without data flow.
    def filter(self, record: logging.LogRecord) -> bool:
        return "data-flow" not in record.getMessage()


@lru_cache(maxsize=1)
def _calc():
    logging.getLogger().addFilter(_QuietCodebleu())
    from codebleu import calc_codebleu

    return calc_codebleu


def codebleu(prediction: str, reference: str, language: str | None) -> float | None:
    """CodeBLEU (the `codebleu` package, equal weights) or None for unsupported languages.

    Per task, on a one-line target. Two properties of the package show on such
    short strings and are kept as they are (the number is the package's): BLEU's
    4-gram smoothing scores an identical line of under four tokens below 1
    (`a = b` gets 0.76), and a reference without data flow has that component
    counted as matched. An empty prediction scores 0.
    """
    if language not in CODEBLEU_LANGUAGES:
        return None
    pred, ref = normalise(prediction), normalise(reference)
    if not ref:
        return None
    if not pred:
        return 0.0
    return float(_calc()([ref], [pred], lang=language)["codebleu"])
