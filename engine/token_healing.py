"""Token healing: which tokens may start a completion that must begin with given text.

A cursor in the middle of a word ("...for x in ite|") leaves the prompt ending
in a token the model rarely saw there ("ite"); it then tends to start a new word
instead of finishing this one. The shared prompt format (`prompt_format.heal`)
moves the partial word out of the prompt, and the engine makes the first
generated tokens spell it out again, choosing among the tokens that agree with
it ("iter", "iterable", ... or "it", then "e..."). Measured on anyio's
held-out files: base-model exact match on mid-word rest-of-line tasks 3/49
without, 19/49 with (docs/evaluation.md).
"""

from __future__ import annotations

import bisect
from collections import defaultdict


class TokenPrefixIndex:
    """Token texts, sorted, for prefix queries (built once per engine, ~1 s for 49k tokens)."""

    def __init__(self, tokenizer):
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        pairs = []
        for i in range(len(tokenizer)):
            if i in special:
                continue
            text = tokenizer.decode([i], clean_up_tokenization_spaces=False)
            if text and "\ufffd" not in text:  # a lone byte of a multi-byte character: never matches text
                pairs.append((text, i))
        pairs.sort()
        self._texts = [t for t, _ in pairs]
        self._ids = [i for _, i in pairs]
        self._exact: dict[str, list[int]] = defaultdict(list)
        self.text_of: dict[int, str] = {}
        for t, i in pairs:
            self._exact[t].append(i)
            self.text_of[i] = t

    def allowed(self, rest: str) -> list[int]:
        """Tokens that agree with `rest`: those starting with it, and those it starts with."""
        lo = bisect.bisect_left(self._texts, rest)
        hi = bisect.bisect_left(self._texts, rest + "\U0010ffff")
        ids = list(self._ids[lo:hi])
        for k in range(1, len(rest)):
            ids.extend(self._exact.get(rest[:k], ()))
        return ids

    def consume(self, rest: str, token_id: int) -> str:
        """What is left of `rest` after `token_id` ("" once a token covers it)."""
        text = self.text_of.get(token_id, "")
        return rest[len(text):] if rest.startswith(text) and len(text) < len(rest) else ""
