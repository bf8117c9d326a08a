"""The evaluation pipeline around the engine: tasks, systems, metrics, CQI, records,
report, serving-system choice — with an oracle engine (the real one: test_engine_e2e)."""

from __future__ import annotations

import json

import pytest

from codetailor.adapters import AdapterStore
from codetailor.home import Home
from codetailor.tenants import Registry
from engine.protocol import EngineClient
from evaluation import evaluate, guardrail, records
from evaluation.data import NoHeldOutFiles
from evaluation.evaluate import EvaluationError
from tests.evaluation.fake_engine import OracleEngine
from tests.evaluation.helpers import add_adapter, fake_model_dir, settings_with, tenant

MODULE = '''"""Inventory helpers."""


def load_items(path, strict=False):
    rows = read_rows(path)
    return [parse_item(row, strict=strict) for row in rows if row.strip()]


def read_rows(path):
    with open(path) as handle:
        return handle.read().splitlines()


def parse_item(row, strict):
    name, _, count = row.partition(",")
    if strict and not count:
        raise ValueError(f"bad row {row!r}")
    return Item(name.strip(), int(count or 0))


class Item:
    def __init__(self, name, count):
        self.name = name
        self.count = count

    def total(self, price):
        return compute_total(self.count, price)


def compute_total(count, price):
    return round(count * price, 2)
'''


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    for i in range(6):
        (root / "pkg" / f"mod{i}.py").write_text(MODULE.replace("Inventory", f"Inventory {i}"))
    return root


@pytest.fixture
def env(tmp_path, repo):
    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path), n=24, bootstrap_samples=200,
                             cqi_threshold=6.0)
    paths = tenant(settings)
    Registry(Home(settings.home), pepper="test").add_source(paths.tenant, "main", str(repo))
    files = {p.relative_to(repo).as_posix(): p.read_text() for p in repo.rglob("*.py")}
    return settings, paths, files


def test_oracle_engine_satisfies_the_protocol():
    assert isinstance(OracleEngine({}), EngineClient)


def test_better_adapter_gets_high_cqi_records_and_report(env, tmp_path):
    settings, paths, files = env
    version = add_adapter(paths, extra={"split": {"heldout_files": ["pkg/mod1.py", "pkg/mod4.py"]}})
    engine = OracleEngine(files)
    result = evaluate(settings, paths, systems="ft", engine=engine, report_dir=tmp_path / "report",
                      progress=False)
    assert set(result["systems"]) == {"base", "ft"} and result["n"] == 24
    assert {t["path"] for t in result["tasks"]} <= {"pkg/mod1.py", "pkg/mod4.py"}
    assert result["split"]["source"] == f"adapter {version}"
    ft, base = result["systems"]["ft"], result["systems"]["base"]
    assert ft["exact_match"] == 1.0 and base["exact_match"] < 0.2
    for m in ("edit_similarity", "codebleu", "identifier_match", "api_usage"):
        assert 0 <= base[m] <= ft[m] <= 1
    assert ft["api_usage"] == 1.0
    # each task row carries what a paired comparison of two runs needs, agreeing with the means
    rows = result["tasks"]
    assert sum(t["exact_match"]["ft"] for t in rows) / len(rows) == ft["exact_match"]
    matched, reference = (sum(t["api_calls"]["base"][i] for t in rows) for i in (0, 1))
    assert reference and matched / reference == base["api_usage"]
    c = result["cqi"]["ft"]
    assert 5 < c["low"] <= c["value"] <= c["high"] <= 10
    # every request was greedy, same prompts for both systems, the adapter only on ft
    assert all(r.temperature == 0 for r in engine.requests)
    by_sys = {}
    for r in engine.requests:
        by_sys.setdefault(r.adapter is not None, []).append(r.prompt)
    assert sorted(by_sys[True]) == sorted(by_sys[False])
    # records: the eval file, the adapter's meta, the serving system
    saved = records.latest(paths)
    assert saved.eval_id == result["eval_id"] and len(saved.tasks) == 24 and saved.chosen_system == "ft"
    assert saved.hardware["cores"] >= 1 and "isa" in saved.hardware   # the run records its machine
    store = AdapterStore(paths)
    assert store.meta(version).evaluation.cqi == c["value"]
    assert store.state().system == "ft"
    # the guardrail now lets it in
    assert guardrail.activate(settings, paths, version)["active"] == version
    # the report renders, with its plots and examples
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| ft |" in report and "improved" in report and "CQI" in report
    for png in ("metrics.png", "cqi.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_system_equal_to_base_gives_cqi_five_and_is_refused(env):
    settings, paths, files = env
    version = add_adapter(paths)
    result = evaluate(settings, paths, systems="ft", engine=OracleEngine(files, right_when=lambda r: False),
                      progress=False)
    assert result["cqi"]["ft"]["value"] == 5.0
    assert result["chosen_system"] == "base"
    with pytest.raises(guardrail.GuardrailRefused):
        guardrail.activate(settings, paths, version)


def test_worse_adapter_below_five(env):
    settings, paths, files = env
    add_adapter(paths)
    result = evaluate(settings, paths, systems="ft", engine=OracleEngine(files, right_when=lambda r: r.adapter is None),
                      progress=False)
    assert result["cqi"]["ft"]["high"] < 5


def test_without_adapter_the_split_is_trainings(env):
    """base/rag measured before training use the files training will hold out."""
    from training.run import split_tenant_files

    settings, paths, files = env
    result = evaluate(settings, paths, systems="base", engine=OracleEngine(files), progress=False)
    assert result["split"]["source"] == "seeded"
    assert {t["path"] for t in result["tasks"]} <= set(split_tenant_files(settings, paths).split.heldout)


def test_an_old_meta_naming_the_split_heldout_still_reads(env):
    settings, paths, files = env
    add_adapter(paths, extra={"split": {"heldout": ["pkg/mod2.py"]}})
    result = evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)
    assert {t["path"] for t in result["tasks"]} == {"pkg/mod2.py"}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n": 0}, EvaluationError, "positive"),
    ({"n": -3}, EvaluationError, "positive"),
    ({"systems": "base,magic"}, EvaluationError, "unknown system"),
    ({"systems": "rag"}, EvaluationError, "no index"),
    ({"systems": "ft"}, EvaluationError, "no adapter"),
])
def test_bad_input(env, kwargs, error, match):
    settings, paths, files = env
    with pytest.raises(error, match=match):
        evaluate(settings, paths, engine=OracleEngine(files), progress=False, **kwargs)


def test_adapter_for_another_base_model(env):
    settings, paths, files = env
    add_adapter(paths, base_sha="f" * 64)
    with pytest.raises(guardrail.BaseModelMismatch):
        evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)


def test_tenant_without_held_out_files(tmp_path):
    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path))
    paths = tenant(settings, "lonely")
    with pytest.raises(NoHeldOutFiles, match="no sources"):
        evaluate(settings, paths, systems="base", engine=OracleEngine({}), progress=False)
    one = tmp_path / "one"
    one.mkdir()
    (one / "only.py").write_text("x = compute(1)\n")
    Registry(Home(settings.home), pepper="t").add_source(paths.tenant, "main", str(one))
    with pytest.raises(NoHeldOutFiles, match="no held-out files"):
        evaluate(settings, paths, systems="base", engine=OracleEngine({}), progress=False)


def test_result_json_round_trips(env):
    settings, paths, files = env
    add_adapter(paths)
    result = evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)
    from evaluation import public_summary

    summary = json.loads(json.dumps(public_summary(result)))
    assert set(summary["systems"]["base"]) >= {"exact_match", "edit_similarity", "codebleu", "identifier_match",
                                               "api_usage"}
    assert set(summary["cqi"]["ft"]) >= {"value", "low", "high"}
    assert summary["n"] == 24 and summary["seconds"] >= 0
