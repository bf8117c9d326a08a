"""The four systems a tenant's completions can come from, in one place.

base: the generic model alone; rag: base with retrieved snippets; ft: the
tenant's adapter; ft+rag: the adapter with retrieved snippets. Evaluation
measures them, the adapter state records which one serving uses, serving runs it.
"""

from __future__ import annotations

from enum import StrEnum


class System(StrEnum):
    BASE = "base"
    RAG = "rag"
    FT = "ft"
    FT_RAG = "ft+rag"

    @property
    def uses_adapter(self) -> bool:
        return self in (System.FT, System.FT_RAG)

    @property
    def uses_retrieval(self) -> bool:
        return self in (System.RAG, System.FT_RAG)

    @property
    def customised(self) -> bool:
        """Tailored to the tenant (compared with base by the CQI)."""
        return self is not System.BASE

    @classmethod
    def of(cls, adapter: bool, retrieval: bool) -> "System":
        return {(False, False): cls.BASE, (False, True): cls.RAG,
                (True, False): cls.FT, (True, True): cls.FT_RAG}[(adapter, retrieval)]

    def without_adapter(self) -> "System":
        """What this system falls back to when the tenant has no usable adapter."""
        return System.of(False, self.uses_retrieval)

    @classmethod
    def parse(cls, name: str) -> "System":
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown system {name!r}; choose one of {', '.join(NAMES)}") from None


SYSTEMS: tuple[System, ...] = tuple(System)
NAMES: tuple[str, ...] = tuple(s.value for s in System)
ADAPTER_SYSTEMS: tuple[System, ...] = tuple(s for s in System if s.uses_adapter)
