"""Errors a user can cause. The CLI prints them as one line and exits != 0;
serving maps them to gRPC status codes. Anything else is a bug and may show a
traceback in logs, never to a client."""


class CodetailorError(Exception):
    """Base class for expected, user-facing failures."""

    exit_code = 2


class InvalidName(CodetailorError):
    pass


class NotFound(CodetailorError):
    exit_code = 3


class AlreadyExists(CodetailorError):
    exit_code = 4


class AuthError(CodetailorError):
    """Missing, malformed, unknown or revoked API key."""

    exit_code = 5


class PermissionDenied(CodetailorError):
    exit_code = 6


class ConfigError(CodetailorError):
    exit_code = 7


class PromptTooLong(CodetailorError):
    pass


class QuotaExceeded(CodetailorError):
    """A per-tenant cap (indexed files or bytes, ...) would be exceeded."""

    exit_code = 10
