"""The definitions pseudo-file: compact form, place in each layout, token budget, drop count,
and prompts without definitions unchanged byte for byte."""

from __future__ import annotations

import pytest

from codetailor.prompt_format import (DEFINITIONS_MARK, PromptParts, Signature, Snippet, build, definitions_from,
                                      parse, render, render_definitions, template_for)

SMOL = template_for("smollm2")
QWEN = template_for("qwen2.5-coder", "native")
SNIPS = (Snippet("lib/best.py", 10, 12, "def best():\n    return 1\n"), Snippet("lib/second.py", 1, 2, "X = 2"))
PREFIX = "import os\n\ndef load(path):\n    with open(path) as f:\n        return f.re"
SUFFIX = "ad()\n\ndef save(p):\n    pass"
DEFS = (
    Signature("parse_duration", "def parse_duration(text: str) -> float:", "src/acme/util.py",
              "Parse '90d' into seconds.", language="python"),
    Signature("now", "def now(self) -> float:", "src/acme/util.py", container="Clock", language="python"),
    Signature("audit", "def audit(self, since: float) -> list:", "src/acme/ledger.py", container="BaseLedger",
              language="python"),
    Signature("Clock", "class Clock:", "src/acme/util.py", "A clock.", language="python"),
)
COMPACT = ("# src/acme/util.py\n"
           "def parse_duration(text: str) -> float:  # Parse '90d' into seconds.\n"
           "class Clock:  # A clock.\n"
           "    def now(self) -> float:\n"
           "# src/acme/ledger.py\n"
           "class BaseLedger:\n"
           "    def audit(self, since: float) -> list:\n")


def words(text: str) -> int:
    """A crude counter: each special token and each whitespace-separated word counts 1."""
    return len(text.split()) + text.count("<")


def parts(definitions=(), snippets=SNIPS) -> PromptParts:
    return PromptParts("app/io.py", PREFIX, SUFFIX, snippets, repo="acme", definitions=definitions)


# What build() gave before definitions existed (same parts, same counter): prompts without
# definitions must not change by a byte.
BEFORE = {
    ("smollm2/text", 40): ("<repo_name>acme<file_sep>lib/second.py:1-2\nX = 2\n<file_sep>lib/best.py:10-12\n"
                           "def best():\n    return 1\n<file_sep>app/io.py (after cursor)\nad()\n\ndef save(p):\n"
                           "    pass\n<file_sep>app/io.py\nimport os\n\ndef load(path):\n    with open(path) as f:\n"
                           "        return f.re", 0, 0, 32),
    ("smollm2/text", 24): ("<repo_name>acme<file_sep>app/io.py (after cursor)\nad()\n\ndef save(p):\n    pass\n"
                           "<file_sep>app/io.py\nimport os\n\ndef load(path):\n    with open(path) as f:\n"
                           "        return f.re", 2, 0, 21),
    ("qwen2.5-coder/native", 40): ("<|repo_name|>acme\n<|file_sep|>lib/second.py:1-2\nX = 2\n<|file_sep|>"
                                   "lib/best.py:10-12\ndef best():\n    return 1\n<|file_sep|>app/io.py\n"
                                   "<|fim_prefix|>import os\n\ndef load(path):\n    with open(path) as f:\n"
                                   "        return f.re<|fim_suffix|>ad()\n\ndef save(p):\n    pass\n<|fim_middle|>",
                                   0, 0, 32),
    ("qwen2.5-coder/native", 24): ("<|repo_name|>acme\n<|file_sep|>app/io.py\n<|fim_prefix|>import os\n\n"
                                   "def load(path):\n    with open(path) as f:\n        return f.re<|fim_suffix|>"
                                   "ad()\n\ndef save(p):\n    pass\n<|fim_middle|>", 2, 0, 21),
}


@pytest.mark.parametrize("template,budget", list(BEFORE))
def test_prompts_without_definitions_are_unchanged(template, budget):
    t = SMOL if template.startswith("smollm2") else QWEN
    built = build(PromptParts("app/io.py", PREFIX, SUFFIX, SNIPS, repo="acme"), words, budget, template=t)
    assert (built.text, built.dropped_snippets, built.trimmed_prefix_lines, built.tokens) == BEFORE[template, budget]
    assert built.dropped_definitions == 0 and built.parts.definitions == ()


def test_compact_form_groups_by_file_and_class_in_rank_order():
    assert render_definitions(DEFS) == COMPACT
    assert render_definitions(()) == ""
    go = (Signature("Volume", "func (p *Parcel) Volume() float64", "shipping/freight.go", "Volume in litres.",
                    container="Parcel", language="go"),)
    assert render_definitions(go) == ("// shipping/freight.go\ntype Parcel\n"
                                      "    func (p *Parcel) Volume() float64  // Volume in litres.\n")


def test_definitions_come_first_in_the_text_layout():
    text = render(parts(DEFS), SMOL)
    assert text.startswith(f"<repo_name>acme<file_sep>app/io.py{DEFINITIONS_MARK}\n{COMPACT}"
                           "<file_sep>lib/second.py:1-2\n")
    assert text.endswith(f"<file_sep>app/io.py\n{PREFIX}")


def test_definitions_come_first_in_the_native_layout():
    text = render(parts(DEFS), QWEN)
    assert text.startswith(f"<|repo_name|>acme\n<|file_sep|>app/io.py{DEFINITIONS_MARK}\n{COMPACT}"
                           "<|file_sep|>lib/second.py:1-2\n")
    assert text.endswith(f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}\n<|fim_middle|>")


@pytest.mark.parametrize("template", [SMOL, QWEN])
def test_parse_reads_the_definitions_back(template):
    text = render(parts(DEFS), template)
    back = parse(text, template)
    assert [(s.path, s.text) for s in back.snippets] == [(s.path, s.text.rstrip("\n")) for s in SNIPS]
    assert back.prefix == PREFIX and back.suffix == SUFFIX
    assert render_definitions(back.definitions) == COMPACT and render(back, template) == text


@pytest.mark.parametrize("template", [SMOL, QWEN])
def test_definitions_take_the_budget_before_snippets(template):
    everything = build(parts(DEFS), words, 1000, template=template)
    assert everything.dropped_definitions == 0 and everything.dropped_snippets == 0
    # room for the definitions but not the snippets too: the snippets go
    no_defs = build(parts(), words, 1000, template=template).tokens
    budget = everything.tokens - 2
    built = build(parts(DEFS), words, budget, template=template)
    assert built.tokens <= budget and built.dropped_definitions == 0 and built.dropped_snippets >= 1
    assert built.parts.definitions == DEFS and no_defs < everything.tokens


@pytest.mark.parametrize("template", [SMOL, QWEN])
@pytest.mark.parametrize("budget", [24, 30, 36, 44, 52, 60])
def test_the_weakest_definitions_drop_first_and_are_counted(template, budget):
    built = build(parts(DEFS, snippets=()), words, budget, template=template)
    kept = len(built.parts.definitions)
    assert built.tokens <= budget
    assert built.parts.definitions == DEFS[:kept] and built.dropped_definitions == len(DEFS) - kept
    if kept:
        assert render_definitions(DEFS[:kept]) in built.text
    else:
        assert DEFINITIONS_MARK not in built.text


def test_some_but_not_all_definitions_fit_at_some_budget():
    counts = {build(parts(DEFS, snippets=()), words, b, template=SMOL).dropped_definitions for b in range(20, 70)}
    assert 0 in counts and len(DEFS) in counts and counts - {0, len(DEFS)}


def test_resolved_definitions_adapt_to_signatures():
    from retrieval.symbols import Definition

    d = Definition("now", "Clock.now", "method", "def now(self) -> float:", "", "Clock", "src/acme/util.py", 14,
                   "python")
    assert definitions_from([d]) == (Signature("now", "def now(self) -> float:", "src/acme/util.py", "", "Clock",
                                               "python"),)
