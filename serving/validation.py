"""Request validation: everything a client can get wrong is INVALID_ARGUMENT
with a message that names the field. Pure functions, no I/O."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass

from codetailor.completion import Cursor
from codetailor.config import ServingConfig
from codetailor.languages import LANGUAGES, language_of, with_language
from serving.status import invalid

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_PATH = 1024
MAX_STOP_LEN = 64
# CompleteRequest.CursorKind's values -> codetailor.completion's kinds (0, unset: inferred).
CURSOR_KINDS = {0: None, 1: "line_start", 2: "mid_line"}


@dataclass(frozen=True)
class CompletionInput:
    """A valid request. `path` is the path shown to the model: the client's, with the extension of
    the request's `language` appended when the client's path has no known one."""
    request_id: str
    prefix: str
    suffix: str
    path: str
    language: str | None
    max_tokens: int
    temperature: float
    stop: tuple[str, ...]
    cursor_kind: str | None = None   # codetailor.completion's kind; None: inferred from the prefix

    def as_dict(self) -> dict:
        return dict(self.__dict__, stop=list(self.stop))


def new_request_id() -> str:
    return "req-" + uuid.uuid4().hex[:16]


def loggable_request_id(raw: str) -> str:
    """The id to log a request under before it is validated: the client's if well formed,
    else a fresh one. A client's id can hold newlines or control characters that would forge
    log lines; validation still rejects it (validate_completion)."""
    return raw if raw and _REQUEST_ID.fullmatch(raw) else new_request_id()


def _text(name: str, value: str) -> str:
    if "\x00" in value:
        raise invalid(f"{name} contains binary data (NUL characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not representable as UTF-8
        raise invalid(f"{name} is not valid UTF-8") from None
    return value


def validate_completion(req, cfg: ServingConfig) -> CompletionInput:
    """Check a CompleteRequest (any object with its fields) against the limits."""
    rid = req.request_id or new_request_id()
    if not _REQUEST_ID.fullmatch(rid):
        raise invalid("request_id must be 1-128 of A-Z a-z 0-9 . _ : -")
    prefix, suffix = _text("prefix", req.prefix), _text("suffix", req.suffix)
    if not prefix.strip() and not suffix.strip():
        raise invalid("the prompt is empty: send the code before (prefix) and/or after (suffix) the cursor")
    if len(prefix) + len(suffix) > cfg.max_prompt_chars:
        raise invalid(f"prefix + suffix hold {len(prefix) + len(suffix)} characters; the limit is {cfg.max_prompt_chars}")
    path = _text("path", req.path) or "untitled"
    if len(path) > MAX_PATH or any(c in path for c in "\n\r"):
        raise invalid(f"path must be one line of at most {MAX_PATH} characters")
    if req.language and req.language not in LANGUAGES:
        raise invalid(f"unknown language {req.language!r}; known: {', '.join(sorted(LANGUAGES))}")
    path = with_language(path, req.language)  # the path's own extension wins over the hint
    language = language_of(path)
    if not 1 <= req.max_tokens <= cfg.max_tokens_limit:
        raise invalid(f"max_tokens must be between 1 and {cfg.max_tokens_limit}, got {req.max_tokens}")
    t = float(req.temperature)
    if math.isnan(t) or not 0.0 <= t <= 2.0:
        raise invalid("temperature must be between 0 and 2")
    stop = tuple(req.stop)
    if len(stop) > cfg.max_stop_sequences:
        raise invalid(f"at most {cfg.max_stop_sequences} stop sequences, got {len(stop)}")
    for s in stop:
        _text("stop", s)
        if not 1 <= len(s) <= MAX_STOP_LEN:
            raise invalid(f"each stop sequence must be 1-{MAX_STOP_LEN} characters")
    kind = _cursor_kind(getattr(req, "cursor_kind", 0), prefix)
    return CompletionInput(rid, prefix, suffix, path, language, int(req.max_tokens), t, stop, kind)


def _cursor_kind(value: int, prefix: str) -> str | None:
    if value not in CURSOR_KINDS:
        raise invalid(f"unknown cursor_kind {value}; known: 0 (unspecified), 1 (line start), 2 (mid-line)")
    try:
        return Cursor(prefix, kind=CURSOR_KINDS[value]).kind
    except ValueError as e:
        raise invalid(f"cursor_kind: {e}") from None
