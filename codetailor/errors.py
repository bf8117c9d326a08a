"""Errors a user can cause, and the one table of what each means to a caller.

The CLI prints one as a single line and exits with its row's code; the servers
answer with its row's gRPC status. Every expected failure is a CodetailorError
subclass that derives from exactly one of the classes in `OUTCOMES` (the nearest
one in its MRO decides). Anything else is a bug and may show a traceback in logs,
never to a client.

A class whose text may hold server internals (paths, engine state) sets
`client_message`; a client is told that instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class CodetailorError(Exception):
    """Base class for expected, user-facing failures; on its own: the input is invalid."""

    client_message: ClassVar[str | None] = None


class InvalidRequest(CodetailorError):
    """A request that is well-formed but out of range (a prompt too long, bad parameters)."""


class InvalidName(CodetailorError):
    pass


class NotFound(CodetailorError):
    pass


class AlreadyExists(CodetailorError):
    pass


class AuthError(CodetailorError):
    """Missing, malformed, unknown or revoked API key."""


class PermissionDenied(CodetailorError):
    pass


class ConfigError(CodetailorError):
    pass


class Refused(CodetailorError):
    """A rule refused the operation (the activation guardrail)."""


class Incompatible(CodetailorError):
    """Stored data or a model that this codetailor or configuration cannot use as it is
    (an adapter trained on another base model, a record from a newer codetailor)."""


class Busy(CodetailorError):
    """Another operation holds what this one needs; retry when it is done."""


class Unavailable(CodetailorError):
    """A service codetailor needs (the server, the vector store, the engine) is not there."""


class Overloaded(CodetailorError):
    """At capacity; retry later."""


class QuotaExceeded(CodetailorError):
    """A per-tenant cap (indexed files or bytes, training time) would be exceeded."""


class RemoteFailed(CodetailorError):
    """The server answered a client command with an error (its status is in the message)."""


class PromptTooLong(InvalidRequest):
    pass


@dataclass(frozen=True)
class Outcome:
    meaning: str
    exit_code: int
    status: str        # gRPC status name


_INVALID = Outcome("invalid input", 2, "INVALID_ARGUMENT")

# The one table: error class -> what the CLI exits with and what gRPC answers.
OUTCOMES: dict[type[CodetailorError], Outcome] = {
    CodetailorError: _INVALID,
    InvalidRequest: _INVALID,
    NotFound: Outcome("not found", 3, "NOT_FOUND"),
    AlreadyExists: Outcome("already exists", 4, "ALREADY_EXISTS"),
    AuthError: Outcome("not authenticated", 5, "UNAUTHENTICATED"),
    PermissionDenied: Outcome("permission denied", 6, "PERMISSION_DENIED"),
    ConfigError: Outcome("configuration error", 7, "FAILED_PRECONDITION"),
    Refused: Outcome("refused by a rule", 8, "FAILED_PRECONDITION"),
    Incompatible: Outcome("incompatible data or model", 9, "FAILED_PRECONDITION"),
    Busy: Outcome("busy", 10, "ABORTED"),
    Unavailable: Outcome("unavailable", 11, "UNAVAILABLE"),
    Overloaded: Outcome("overloaded", 12, "RESOURCE_EXHAUSTED"),
    RemoteFailed: Outcome("the server answered with an error", 13, "UNKNOWN"),
    QuotaExceeded: Outcome("a tenant quota is exceeded", 14, "RESOURCE_EXHAUSTED"),
}
INTERRUPTED_EXIT = 130


def outcome(exc: CodetailorError | type[CodetailorError]) -> Outcome:
    cls = exc if isinstance(exc, type) else type(exc)
    for c in cls.__mro__:
        if c in OUTCOMES:
            return OUTCOMES[c]
    raise TypeError(f"{cls.__name__} is not a CodetailorError")


def client_text(exc: CodetailorError) -> str:
    """What a client may be told about `exc`."""
    return exc.client_message or str(exc)
