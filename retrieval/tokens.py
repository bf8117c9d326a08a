"""Code-aware tokens for BM25: identifiers kept whole and split into their words.

`parseHTTPResponse_v2` gives `parsehttpresponse_v2`, `parse`, `http`, `response`, `v2`:
a query naming the identifier matches it exactly (rare term, high weight) and a
query in words still finds it through the parts.
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
# camelCase / PascalCase / ACRONYMWord boundaries inside one snake_case part
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")


def split_identifier(ident: str) -> list[str]:
    parts: list[str] = []
    for piece in ident.split("_"):
        if piece:
            parts.extend(m.group(0).lower() for m in _CAMEL.finditer(piece))
    return parts


def code_tokens(text: str) -> list[str]:
    out: list[str] = []
    for m in _IDENT.finditer(text):
        ident = m.group(0)
        whole = ident.lower()
        if len(whole) > 1:
            out.append(whole)
        parts = split_identifier(ident)
        if len(parts) > 1:
            out.extend(p for p in parts if len(p) > 1)
    return out


def identifiers(text: str) -> set[str]:
    """Identifiers (length > 1) in a text, as written; used by the quality benchmark."""
    return {m.group(0) for m in _IDENT.finditer(text) if len(m.group(0)) > 1 and not m.group(0).isdigit()}
