"""Validated names for tenants and sources.

A name becomes a directory under the home, so it must never carry a path trick
("..", "/", a leading dot) or anything a shell or URL would mangle.
"""

from __future__ import annotations

import re

from codetailor.errors import InvalidName

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} name {value!r}: use 1-63 of a-z, 0-9, '-', '_', starting with a letter or digit"
        )
    return value


# Catalog model names carry versions ("qwen2.5-coder-0.5b"): dots allowed, never two in a row.
_MODEL_NAME = re.compile(r"^[a-z0-9](?!.*\.\.)[a-z0-9._-]{0,62}$")


def validate_model_name(value: str) -> str:
    if not isinstance(value, str) or not _MODEL_NAME.fullmatch(value):
        raise InvalidName(f"invalid model name {value!r}: use 1-63 of a-z, 0-9, '.', '-', '_', "
                          f"starting with a letter or digit")
    return value


class TenantId(str):
    """A tenant name that has been validated. Every per-tenant store takes one."""

    def __new__(cls, value: str) -> "TenantId":
        return super().__new__(cls, validate_name("tenant", value))


class SourceName(str):
    """A named source (repository) of a tenant."""

    def __new__(cls, value: str) -> "SourceName":
        return super().__new__(cls, validate_name("source", value))
