"""`codetailor eval` and `codetailor adapters ...`: results, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest

from codetailor.cli import main
from codetailor.config import get_settings
from tests.evaluation.helpers import add_adapter, fake_model_dir, tenant


@pytest.fixture
def cli_env(tmp_home, tmp_path, monkeypatch):
    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(fake_model_dir(tmp_path)))
    monkeypatch.setenv("CODETAILOR_EVALUATION__CQI_THRESHOLD", "6")
    get_settings.cache_clear()
    return tenant(get_settings(), "acme")


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_unknown_tenant_is_one_line(cli_env, capsys):
    code, out, err = run(capsys, "eval", "--tenant", "ghost", "--n", "5")
    assert code != 0 and err.count("\n") == 1 and "unknown tenant" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, match", [
    (["--n", "0"], "positive"),
    (["--n", "-1"], "positive"),
    (["--systems", "gpt"], "unknown system"),
    (["--systems", "base,rag"], "no index"),
    (["--systems", "ft"], "no adapter"),
    (["--adapter", "v0099"], "no adapter version"),
])
def test_eval_bad_input(cli_env, capsys, argv, match):
    code, out, err = run(capsys, "eval", "--tenant", "acme", *argv)
    assert code != 0 and match in err and err.count("\n") == 1


def test_adapters_list_activate_rollback_system(cli_env, capsys):
    v1 = add_adapter(cli_env, cqi=7.5)
    v2 = add_adapter(cli_env, cqi=4.0)
    v3 = add_adapter(cli_env, cqi=8.0)
    code, out, _ = run(capsys, "adapters", "list", "--tenant", "acme", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["version"] for r in rows] == [v1, v2, v3]
    assert [r["allowed"] for r in rows] == [True, False, True] and rows[2]["latest"]

    assert run(capsys, "adapters", "activate", "--tenant", "acme", v1)[0] == 0
    code, _, err = run(capsys, "adapters", "activate", "--tenant", "acme", v2)
    assert code == 8 and "not above the threshold" in err
    assert run(capsys, "adapters", "activate", "--tenant", "acme", v3, "--json")[0] == 0
    code, out, _ = run(capsys, "adapters", "rollback", "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["active"] == v1
    code, out, _ = run(capsys, "adapters", "list", "--tenant", "acme")
    assert f"{v1}\tactive" in out

    code, out, _ = run(capsys, "adapters", "system", "--tenant", "acme", "--override", "rag", "--json")
    assert json.loads(out)["serving_system"] == "rag"
    code, out, _ = run(capsys, "adapters", "system", "--tenant", "acme", "--clear-override", "--json")
    assert json.loads(out)["override"] is None


def test_rollback_without_previous(cli_env, capsys):
    code, _, err = run(capsys, "adapters", "rollback", "--tenant", "acme")
    assert code == 3 and "no previous" in err


def test_activate_foreign_base_model(cli_env, capsys):
    v = add_adapter(cli_env, base_sha="c" * 64, cqi=9.0)
    code, _, err = run(capsys, "adapters", "activate", "--tenant", "acme", v)
    assert code == 9 and "another base model" in err


def test_eval_table_text():
    from codetailor.cli.evaluate import _table

    text = _table({"tenant": "acme", "adapter": "v0001", "n": 3, "seconds": 1.2, "split": {"source": "seeded"},
                   "systems": {"base": {"exact_match": 0.1, "edit_similarity": 0.5, "codebleu": None,
                                        "identifier_match": 0.3, "api_usage": None}},
                   "cqi": {"rag": {"value": 6.1, "low": 5.2, "high": 7.0}}, "chosen_system": "rag"})
    assert "CQI rag" in text and "5.20–7.00" in text and "—" in text and "serving system: rag" in text
