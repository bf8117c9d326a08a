"""Code-aware tokens for BM25: identifiers kept whole and split into their words.

`parseHTTPResponse_v2` gives `parsehttpresponse_v2`, `parse`, `http`, `response`, `v2`:
a query naming the identifier matches it exactly (rare term, high weight) and a
query in words still finds it through the parts.

Indexing tokenises every chunk, and a repository repeats its identifiers thousands of
times, so each identifier's tokens are worked out once and kept in a bounded memo.
"""

from __future__ import annotations

import re
from itertools import chain

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
# camelCase / PascalCase / ACRONYMWord boundaries inside one snake_case part
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")
# a snake_case part _CAMEL leaves whole (one word): `word2`, `Word2`, `WORD2`, `42`
_PLAIN_PART = re.compile(r"[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+")

_MEMO_MAX = 500_000   # identifiers remembered; the memo starts over beyond (bounded memory)
_memo: dict[str, tuple[str, ...]] = {}


def split_identifier(ident: str) -> list[str]:
    parts: list[str] = []
    for piece in ident.split("_"):
        if piece:
            if _PLAIN_PART.fullmatch(piece):
                parts.append(piece.lower())
            else:
                parts.extend(m.group(0).lower() for m in _CAMEL.finditer(piece))
    return parts


def _identifier_tokens(ident: str) -> tuple[str, ...]:
    whole = ident.lower()
    out = [whole] if len(whole) > 1 else []
    parts = split_identifier(ident)
    if len(parts) > 1:
        out.extend(p for p in parts if len(p) > 1)
    return tuple(out)


def code_tokens(text: str) -> list[str]:
    idents = _IDENT.findall(text)
    memo = _memo
    new = [i for i in set(idents) if i not in memo]
    if new:
        if len(memo) + len(new) > _MEMO_MAX:
            memo.clear()
            new = set(idents)
        for ident in new:
            memo[ident] = _identifier_tokens(ident)
    return list(chain.from_iterable(map(memo.__getitem__, idents)))


def identifiers(text: str) -> set[str]:
    """Identifiers (length > 1) in a text, as written; used by the quality benchmark."""
    return {m.group(0) for m in _IDENT.finditer(text) if len(m.group(0)) > 1 and not m.group(0).isdigit()}
