"""The one error table: every error class has exactly one exit code and one gRPC status."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from codetailor.errors import OUTCOMES, CodetailorError, outcome

PACKAGES = ["codetailor", "engine", "retrieval", "training", "evaluation", "serving"]


def _all_error_classes() -> set[type]:
    for pkg in PACKAGES:
        module = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(module.__path__, pkg + "."):
            if "_gen" not in info.name and not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    seen, todo = set(), [CodetailorError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.split(".")[0] in PACKAGES and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_every_error_class_has_one_row_and_no_code_of_its_own():
    classes = _all_error_classes()
    assert len(classes) > 20
    for cls in classes:
        assert outcome(cls) in OUTCOMES.values()
        assert "exit_code" not in vars(cls), f"{cls.__name__} sets its own exit code; the table decides"


def test_each_exit_code_means_one_thing():
    by_code: dict[int, set[str]] = {}
    for o in OUTCOMES.values():
        by_code.setdefault(o.exit_code, set()).add(o.meaning)
    assert all(len(m) == 1 for m in by_code.values()), by_code
    assert not set(by_code) & {0, 1, 130}   # success, Python's own failure, interrupted


def test_formerly_shared_codes_are_told_apart():
    from codetailor.cli.serve import CompletionFailed
    from evaluation.guardrail import BaseModelMismatch, GuardrailRefused
    from retrieval.ingest import IndexBusy
    from retrieval.vectors import VectorStoreUnavailable
    from serving.app import ServingUnavailable

    eights = {GuardrailRefused, CompletionFailed, VectorStoreUnavailable}
    assert len({outcome(c).exit_code for c in eights}) == 3
    assert outcome(VectorStoreUnavailable) == outcome(ServingUnavailable)   # both: a service is not there
    assert outcome(BaseModelMismatch).exit_code != outcome(IndexBusy).exit_code


def test_engine_errors_are_codetailor_errors_with_safe_client_text():
    from engine.protocol import AdapterLoadError, EngineDead, EngineError, EngineOverloaded, RequestRejected
    from serving.status import classify

    assert issubclass(EngineError, CodetailorError)
    secret = "/srv/home/tenants/acme/adapters/v0001 pid 4242"
    assert classify(EngineDead(secret)) == ("UNAVAILABLE", "the model is unavailable; retry shortly")
    assert classify(AdapterLoadError(secret))[0] == "UNAVAILABLE"
    assert classify(EngineOverloaded(secret))[0] == "RESOURCE_EXHAUSTED"
    assert classify(RequestRejected(secret))[0] == "INVALID_ARGUMENT"
    for cls in (EngineDead, AdapterLoadError, EngineOverloaded, RequestRejected):
        assert secret not in classify(cls(secret))[1]


@pytest.mark.parametrize("cls", list(OUTCOMES))
def test_cli_and_servers_use_the_table(cls, monkeypatch, capsys):
    import codetailor.cli as cli
    from serving.status import classify

    row = OUTCOMES[cls]
    assert classify(cls("what went wrong")) == (row.status, "what went wrong")

    def handler(args):
        raise cls("what went wrong")

    class Parser:
        def parse_args(self, argv):
            return type("Args", (), {"handler": staticmethod(handler)})()

    monkeypatch.setattr(cli, "build_parser", Parser)
    assert cli.main([]) == row.exit_code
    assert capsys.readouterr().err.strip() == "codetailor: error: what went wrong"
