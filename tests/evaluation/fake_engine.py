"""A protocol-satisfying engine for tests of the code around the engine.

It answers from the true files: `oracle(adapter)` decides per request whether
to return the real continuation at the cursor (found by parsing the prompt
with the shared prompt format) or a wrong one. The real engine has its own
tests and the end-to-end evaluation test."""

from __future__ import annotations

from codetailor.prompt_format import parse
from engine.protocol import EngineHealth, GenerationRequest, GenerationResult


class OracleEngine:
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
        for s in request.stop:
            if s in text:
                text = text[: text.index(s)]
        return GenerationResult(request.request_id or "r", text, "stop", self.count_tokens(request.prompt),
                                len(text.split()), request.adapter)

    async def stream(self, request):  # pragma: no cover - not used by evaluation
        yield await self.generate(request)

    async def abort(self, request_id: str) -> None:
        pass

    async def add_adapter(self, adapter) -> None:
        pass

    async def remove_adapter(self, adapter) -> None:
        pass

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    async def shutdown(self) -> None:
        pass
