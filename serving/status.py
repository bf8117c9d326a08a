"""The status-code contract of the servers (codetailor.errors holds the table; docs/serving.md shows it).

Deployments never raise for an expected failure: they return (or yield)
`{"error": {"code": NAME, "message": ...}}` with a gRPC status *name*, so replicas
need no grpc import and a Ray exception wrapper never reaches a client. The
front server maps everything else here; an unknown exception becomes INTERNAL
with only the request id in its message (the cause goes to the server log).
"""

from __future__ import annotations

import asyncio

from codetailor.errors import CodetailorError, client_text, outcome


class ServingError(Exception):
    """An expected failure with its gRPC status name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def from_dict(d: dict) -> ServingError:
    e = d["error"]
    return ServingError(e["code"], e["message"])


def classify(exc: BaseException) -> tuple[str, str | None]:
    """(status name, client-safe message or None for 'internal')."""
    if isinstance(exc, ServingError):
        return exc.code, exc.message
    if isinstance(exc, CodetailorError):
        return outcome(exc).status, client_text(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "DEADLINE_EXCEEDED", "the deadline passed before the completion was ready; it was cancelled"
    try:  # Ray's exceptions, without importing Ray in processes that do not need it
        from ray.serve.exceptions import (BackPressureError, DeploymentUnavailableError,
                                          ReplicaUnavailableError, RequestCancelledError)
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        if isinstance(exc, BackPressureError):
            return "RESOURCE_EXHAUSTED", "the server is at capacity; retry later"
        if isinstance(exc, RequestCancelledError):
            return "CANCELLED", "the request was cancelled"
        if isinstance(exc, (DeploymentUnavailableError, ReplicaUnavailableError, ActorDiedError,
                            ActorUnavailableError, RayActorError)):
            return "UNAVAILABLE", "the model service is unavailable; retry shortly"
    except ImportError:
        pass
    return "INTERNAL", None
