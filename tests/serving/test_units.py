"""Fast unit tests of serving's pure parts (no Ray, no engine)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from codetailor.config import ServingConfig
from codetailor.errors import AuthError, NotFound, PermissionDenied, PromptTooLong
from serving.status import ServingError, classify
from serving.validation import validate_completion


def req(**kw):
    base = dict(prefix="def f():\n    return", suffix="", path="a.py", language="", max_tokens=8,
                temperature=0.0, stop=[], request_id="")
    base.update(kw)
    return SimpleNamespace(**base)


CFG = ServingConfig(max_tokens_limit=64, max_prompt_chars=1000, max_stop_sequences=2)


def test_valid_request_normalised():
    v = validate_completion(req(), CFG)
    assert v.language == "python" and v.max_tokens == 8 and v.request_id.startswith("req-")


@pytest.mark.parametrize("path, language, shown, detected", [
    ("", "python", "untitled.py", "python"),        # no path: the hint names the file's language
    ("scripts/run", "shell", "scripts/run.sh", "shell"),
    ("a.go", "python", "a.go", "go"),               # the path's own extension wins
    ("notes", "", "notes", None),
])
def test_language_hint_reaches_the_prompt_path(path, language, shown, detected):
    v = validate_completion(req(path=path, language=language), CFG)
    assert (v.path, v.language) == (shown, detected)


@pytest.mark.parametrize("bad", [
    dict(prefix="", suffix=" \n"), dict(max_tokens=0), dict(max_tokens=-1), dict(max_tokens=65),
    dict(language="klingon"), dict(prefix="a\x00b"), dict(prefix="x" * 1001), dict(stop=["a", "b", "c"]),
    dict(stop=[""]), dict(temperature=float("nan")), dict(temperature=3.0), dict(path="a\nb.py"),
    dict(request_id="has space"), dict(prefix="\udcff"), dict(cursor_kind=7),
    dict(prefix="def f():\n    return", cursor_kind=1),   # a line start needs a prefix ending in a newline
])
def test_invalid_requests_are_invalid_argument(bad):
    with pytest.raises(ServingError) as e:
        validate_completion(req(**bad), CFG)
    assert e.value.code == "INVALID_ARGUMENT"


def test_status_mapping():
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import BackPressureError

    assert classify(AuthError("x"))[0] == "UNAUTHENTICATED"
    assert classify(PermissionDenied("x"))[0] == "PERMISSION_DENIED"
    assert classify(NotFound("x"))[0] == "NOT_FOUND"
    assert classify(PromptTooLong("x"))[0] == "INVALID_ARGUMENT"
    assert classify(TimeoutError())[0] == "DEADLINE_EXCEEDED"
    assert classify(BackPressureError(num_queued_requests=3, max_queued_requests=3))[0] == "RESOURCE_EXHAUSTED"
    assert classify(ActorDiedError())[0] == "UNAVAILABLE"
    assert classify(KeyError("/secret/path")) == ("INTERNAL", None)  # no detail reaches a client


def test_outcome_store_appends_and_summarises(tmp_path):
    from codetailor.home import Home
    from serving.outcomes import OutcomeStore

    store = OutcomeStore(Home(tmp_path).tenant("acme"))
    store.record("c1", "accepted", 10, system="ft", adapter_version="v0001")
    store.record("c2", "rejected", 0, system="ft", adapter_version="v0001")
    with open(store.file, "a") as f:
        f.write('{"torn')  # a crash mid-line
    s = store.summary()
    assert (s["accepted"], s["rejected"], s["accepted_chars"], s["acceptance_rate"]) == (1, 1, 10, 0.5)


def test_stubs_are_fresh_and_import():
    from serving import stubs

    pb, pb_grpc, apb, apb_grpc = stubs.load()
    assert stubs.is_fresh()
    assert pb.CompleteRequest(prefix="x").prefix == "x"
    assert "ActivateAdapter" in apb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name


def test_every_rpc_and_field_is_commented():
    from serving.stubs import PROTO_DIR, PROTOS

    for rel in PROTOS:
        lines = (PROTO_DIR / rel).read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            if s.startswith("rpc ") or (s.endswith(";") and "=" in s and not s.startswith(("syntax", "package", "option"))):
                assert lines[i - 1].strip().startswith("//"), f"{rel}:{i + 1} has no comment: {s}"


def test_counting_zero_is_not_an_error():
    """An empty completion or no retrieved snippet adds 0 to a counter (Ray's own Counter raises)."""
    from serving.metrics import _counter_class

    c = _counter_class()("codetailor_test_zero_total", "test", tag_keys=("direction",))
    c.inc(0, tags={"direction": "in"})
    c.inc(3, tags={"direction": "in"})


@pytest.mark.parametrize("prefix, kind, want", [
    ("x = 1\n", 0, None), ("x = 1\n", 1, "line_start"), ("", 1, "line_start"), ("x = 1\n", 2, "mid_line"),
])
def test_the_cursor_kind_travels_to_the_ingress(prefix, kind, want):
    v = validate_completion(req(prefix=prefix, suffix="y", cursor_kind=kind), CFG)
    assert v.cursor_kind == want and v.as_dict()["cursor_kind"] == want
