"""An EngineClient for tests of the code around the engine (the contract suite,
tests/engine/test_contract.py, holds it to what the real engine does).

It answers from the true files: `oracle(adapter)` decides per request whether
to return the real continuation at the cursor (found by parsing the prompt
with the shared prompt format) or a wrong one. The real engine has its own
tests and the end-to-end evaluation test."""

from __future__ import annotations

from codetailor.prompt_format import parse
from engine.protocol import EngineClient, EngineHealth, GenerationRequest, GenerationResult

CHARS_PER_TOKEN = 4


class OracleEngine(EngineClient):
    def __init__(self, files: dict[str, str], right_when=lambda request: request.adapter is not None):
        self.files = files
        self.right_when = right_when
        self.requests: list[GenerationRequest] = []

    def truth(self, prompt: str) -> str:
        parts = parse(prompt)
        text = self.files[parts.path]
        at = text.rfind(parts.prefix)
        assert at >= 0, "the prompt's prefix must come from the file"
        return text[at + len(parts.prefix):]

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        cont = self.truth(request.prompt)
        # A healed prompt stops before the cursor's partial word; like the real engine, the
        # completion spells it and the result omits it (engine/token_healing.py).
        assert cont.startswith(request.heal), "the healed word must come right after the prompt"
        cont = cont[len(request.heal):]
        if not self.right_when(request):
            cont = cont[:2] + "wrong_guess(0)\n"
        lines = cont.split("\n")
        text = "\n".join(lines[:3])
        finish = "stop"
        if len(text) > request.max_tokens * CHARS_PER_TOKEN:
            text, finish = text[:request.max_tokens * CHARS_PER_TOKEN], "length"
        for s in request.stop:
            if s in text:
                text, finish = text[: text.index(s)], "stop"
        return GenerationResult(request.request_id or "r", text, finish, self.count_tokens(request.prompt),
                                self.count_tokens(text) if text else 0, request.adapter)

    async def stream(self, request):
        whole = await self.generate(request)
        pieces = [whole.text[i:i + CHARS_PER_TOKEN] for i in range(0, len(whole.text), CHARS_PER_TOKEN)] or [""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield GenerationResult(whole.request_id, piece, whole.finish_reason if last else None,
                                   whole.prompt_tokens, whole.completion_tokens if last else i + 1, whole.adapter)

    async def abort(self, request_id: str) -> None:
        pass

    async def add_adapter(self, adapter) -> None:
        pass

    async def remove_adapter(self, adapter) -> None:
        pass

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True)

    def count_tokens(self, text: str) -> int:
        return max(1, -(-len(text) // CHARS_PER_TOKEN))

    async def shutdown(self) -> None:
        pass
