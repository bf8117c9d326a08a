"""The contract between the engine and everything above it.

In the spirit of vLLM's own EngineClient: generate, stream, adapters, health.
Callers name adapters only by `AdapterRef` (tenant + version + the version's
unique id), never by a path; the resolver inside the engine turns a ref into
whatever the backend needs. Tests of code above the engine can use any object
that satisfies this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol, runtime_checkable

from codetailor.names import TenantId


class EngineError(Exception):
    """The engine could not serve a request (dead engine, bad adapter, ...)."""


class AdapterLoadError(EngineError):
    """An adapter's files are missing or corrupt; callers may fall back to the base model."""


class EngineOverloaded(EngineError):
    pass


class EngineDead(EngineError):
    """The engine process failed or was shut down; it must be restarted."""


class RequestRejected(EngineError):
    """The engine refused this request (e.g. prompt longer than max_model_len); others still run."""


@dataclass(frozen=True)
class AdapterRef:
    tenant: TenantId
    version: str
    uid: str  # unique per published version (meta.json); distinguishes a recreated tenant's v0001


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_tokens: int
    temperature: float = 0.0       # 0 = greedy
    stop: tuple[str, ...] = ()
    # The prompt template's stop tokens (prompt_format.Template.stop_token_ids): special tokens such
    # as Qwen's <|endoftext|> or <|file_sep|> that end a completion without being its eos token.
    stop_token_ids: tuple[int, ...] = ()
    adapter: AdapterRef | None = None
    request_id: str | None = None
    seed: int | None = None
    # Token healing (engine/token_healing.py): the partial word the prompt format took off the
    # prompt's end; the completion's first tokens must spell it, and the result's text omits it.
    heal: str = ""


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str                      # the whole completion (for a stream chunk: the new text)
    finish_reason: str | None      # "stop", "length", "abort" or None while streaming
    prompt_tokens: int
    completion_tokens: int
    adapter: AdapterRef | None
    queue_ms: float = 0.0
    generation_ms: float = 0.0


@dataclass(frozen=True)
class EngineHealth:
    ok: bool
    running_requests: int = 0
    waiting_requests: int = 0
    loaded_adapters: int = 0
    detail: str = ""


@runtime_checkable
class EngineClient(Protocol):
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one request to completion."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """Yield the completion as it grows (each item carries the new text); the
        last item has finish_reason set. Closing the iterator aborts the request."""

    async def abort(self, request_id: str) -> None:
        """Cancel a running request and free its KV cache."""

    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Load an adapter ahead of traffic (optional: generate loads on first use)."""

    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Drop an adapter from the engine's caches."""

    async def health(self) -> EngineHealth:
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the engine's tokenizer (for the prompt budget)."""

    async def shutdown(self) -> None:
        ...
