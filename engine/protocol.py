"""The contract between the engine and everything above it.

In the spirit of vLLM's own EngineClient: generate, stream, adapters, health.
Callers name adapters only by `AdapterRef` (tenant + version + the version's
unique id), never by a path; the resolver inside the engine turns a ref into
whatever the backend needs. Every engine, the test fakes included, subclasses
`EngineClient`: a missing method fails when the engine is built, and one
conformance suite (tests/engine/test_contract.py) runs against them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import AsyncIterator

from codetailor.errors import InvalidRequest, Overloaded, Unavailable
from codetailor.names import TenantId


class EngineError(Unavailable):
    """The engine could not serve a request (dead engine, bad adapter, ...). Its text may name
    paths and engine state: clients get `client_message` (codetailor.errors)."""

    client_message = "the model is unavailable; retry shortly"


class AdapterLoadError(EngineError):
    """An adapter's files are missing or corrupt; callers may fall back to the base model."""


class EngineOverloaded(Overloaded, EngineError):
    client_message = "the engine is at capacity; retry later"


class EngineDead(EngineError):
    """The engine process failed or was shut down; it must be restarted."""


class RequestRejected(InvalidRequest, EngineError):
    """The engine refused this request (e.g. prompt longer than max_model_len); others still run."""

    client_message = "the engine rejected the request (prompt or parameters out of range)"


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
    # Prefix-cache namespace (vLLM's cache_salt): requests reuse cached prefixes only within one
    # salt. Serving sets it per tenant, so a timing probe cannot tell what another tenant sent.
    cache_salt: str | None = None


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


class EngineClient(ABC):
    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run one request to completion; the result carries the request's `request_id`
        when it has one."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationResult]:
        """Yield the completion as it grows (each item carries the new text); the
        last item has finish_reason set. Closing the iterator aborts the request."""

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Cancel a running request and free its KV cache (an unknown id is no error)."""

    @abstractmethod
    async def add_adapter(self, adapter: AdapterRef) -> None:
        """Load an adapter ahead of traffic (optional: generate loads on first use)."""

    @abstractmethod
    async def remove_adapter(self, adapter: AdapterRef) -> None:
        """Drop an adapter from the engine's caches."""

    @abstractmethod
    async def health(self) -> EngineHealth:
        """Whether the engine can serve, and its running and waiting requests."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the engine's tokenizer (for the prompt budget)."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stop the engine; later calls fail with EngineDead."""
