"""`eval --resume`: a killed run keeps its finished tasks, and continuing it gives the record one
uninterrupted run gives, asking the engine only for the tasks left."""

from __future__ import annotations

import asyncio
import sys

import pytest

from codetailor.artifacts import ArtifactError
from codetailor.cli import main
from codetailor.config import get_settings
from codetailor.home import Home
from codetailor.tenants import Registry
from evaluation import evaluate, public_summary, records
from evaluation.resume import RunInProgress, busy
from tests.evaluation.fake_engine import OracleEngine
from tests.evaluation.helpers import add_adapter, fake_model_dir, tenant
from tests.evaluation.test_pipeline import env, repo  # noqa: F401  (the same tenant and files)

SAME = ("systems", "cqi", "by_kind", "tasks", "n", "split", "adapter", "chosen_system")
HELDOUT = {"split": {"heldout_files": ["pkg/mod1.py", "pkg/mod4.py"]}}


class DyingEngine(OracleEngine):
    """Answers `after` requests, then fails every one, as an engine killed mid-run would."""

    def __init__(self, files, after: int):
        super().__init__(files)
        self.after = after

    async def generate(self, request):
        if len(self.requests) >= self.after:
            raise RuntimeError("engine died")
        return await super().generate(request)


def asked_tasks(engine: OracleEngine) -> set[str]:
    # request ids are eval-<run>-<system>-<task id> (evaluation/runner.py)
    return {r.request_id.split("-", 3)[3] for r in engine.requests}


def interrupt(settings, paths, files, after: int = 10):
    with pytest.raises(RuntimeError, match="engine died"):
        evaluate(settings, paths, systems="ft", engine=DyingEngine(files, after), progress=False)
    [(path, header)] = records.partial_runs(paths)
    return path, header


def test_a_resumed_run_equals_an_uninterrupted_one_and_asks_only_for_the_rest(env, capsys):
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    whole = evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)
    assert records.partial_runs(paths) == []          # a finished run leaves no partial file

    path, header = interrupt(settings, paths, files, after=10)
    assert len(path.read_text().splitlines()) == 1 + 5                            # 10 answers = 5 tasks, both systems each
    engine = OracleEngine(files)
    resumed = evaluate(settings, paths, systems="ft", engine=engine, progress=False, resume=True)

    assert "resuming evaluation" in capsys.readouterr().err
    assert len(engine.requests) == (24 - 5) * 2
    assert asked_tasks(engine) == set(header.task_ids[5:])
    assert {k: resumed[k] for k in SAME} == {k: whole[k] for k in SAME}
    assert resumed["runs"] == 2 and whole["runs"] == 1 and public_summary(resumed)["runs"] == 2
    assert records.partial_runs(paths) == [] and resumed["eval_id"] in {p.stem for p in records.eval_files(paths)}


def test_a_torn_last_line_is_dropped_and_its_task_done_again(env):
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    whole = evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)
    path, header = interrupt(settings, paths, files, after=8)                  # 4 tasks kept
    with open(path, "a") as f:
        f.write('{"task": "pkg/mod1.py:7:next_line", "compl')                  # killed mid-write
    # killed again after one more task: its line must start a line of its own, not extend the torn one
    with pytest.raises(RuntimeError, match="engine died"):
        evaluate(settings, paths, systems="ft", engine=DyingEngine(files, 2), progress=False, resume=True)
    engine = OracleEngine(files)
    resumed = evaluate(settings, paths, systems="ft", engine=engine, progress=False, resume=True)
    assert asked_tasks(engine) == set(header.task_ids[5:])
    assert resumed["runs"] == 3
    assert {k: resumed[k] for k in SAME} == {k: whole[k] for k in SAME}


def test_a_damaged_line_before_the_last_is_refused(env):
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    path, _ = interrupt(settings, paths, files, after=8)
    lines = path.read_text().split("\n")
    lines[2] = lines[2][:40]
    path.write_text("\n".join(lines))
    with pytest.raises(ArtifactError, match="line 3 is damaged"):
        evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False, resume=True)


def test_resume_without_a_partial_run_starts_one(env, capsys):
    settings, paths, files = env
    result = evaluate(settings, paths, systems="base", engine=OracleEngine(files), progress=False, resume=True)
    assert "starting a new run" in capsys.readouterr().err
    assert result["n"] == 24 and records.partial_runs(paths) == []


def test_changed_held_out_text_starts_a_new_run(env, repo, capsys):  # noqa: F811
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    old, _ = interrupt(settings, paths, files)
    held = repo / "pkg" / "mod1.py"
    held.write_text(held.read_text().replace("round(count * price, 2)", "round(count * price, 3)"))
    files = {**files, "pkg/mod1.py": held.read_text()}
    engine = OracleEngine(files)
    result = evaluate(settings, paths, systems="ft", engine=engine, progress=False, resume=True)
    assert "its held-out tasks differ" in capsys.readouterr().err
    assert len(engine.requests) == 24 * 2 and result["runs"] == 1     # nothing of the old run mixed in
    assert not old.exists()          # its settings now have a record: retired, never to be mixed in


def test_a_finished_run_retires_the_unfinished_runs_it_supersedes(env):
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    interrupt(settings, paths, files)                                   # idle, same settings
    held, _ = interrupt_again(settings, paths, files, "ft")
    other, _ = interrupt_again(settings, paths, files, "base")
    with records.open_partial(held, busy(held.stem)):                  # another process is continuing it
        evaluate(settings, paths, systems="ft", engine=OracleEngine(files), progress=False)
    # same settings and idle: gone; held by a process, or made with other settings: kept
    assert {p for p, _ in records.partial_runs(paths)} == {held, other}


def interrupt_again(settings, paths, files, systems: str):
    """Kill a new run of `systems` (earlier unfinished runs exist); its partial file and header."""
    before = {p for p, _ in records.partial_runs(paths)}
    with pytest.raises(RuntimeError, match="engine died"):
        evaluate(settings, paths, systems=systems, engine=DyingEngine(files, 2), progress=False)
    [(path, header)] = [(p, h) for p, h in records.partial_runs(paths) if p not in before]
    return path, header


def test_a_run_in_progress_is_not_opened_twice(env):
    settings, paths, files = env
    add_adapter(paths, extra=HELDOUT)
    path, _ = interrupt(settings, paths, files)
    with records.open_partial(path, busy(path.stem)):
        with pytest.raises(RunInProgress):
            with records.open_partial(path, busy(path.stem)):
                pass


@pytest.mark.parametrize("argv, setting, says", [
    (["--n", "12"], {}, "n was 24, now 12"),
    (["--systems", "base"], {}, 'systems was ["base", "ft"], now ["base"]'),
    ([], {"CODETAILOR_PROMPT__BUDGET_TOKENS": "1024"}, "prompt.budget_tokens was 2048, now 1024"),
])
def test_cli_resume_with_other_settings_starts_anew_and_says_why(tmp_home, tmp_path, repo, monkeypatch,  # noqa: F811
                                                                 capsys, argv, setting, says):
    monkeypatch.setenv("CODETAILOR_MODEL__BASE", str(fake_model_dir(tmp_path)))
    monkeypatch.setenv("CODETAILOR_EVALUATION__N", "24")
    get_settings.cache_clear()
    settings = get_settings()
    paths = tenant(settings, "acme")
    Registry(Home(settings.home), pepper="test").add_source(paths.tenant, "main", str(repo))
    add_adapter(paths, extra=HELDOUT)
    files = {p.relative_to(repo).as_posix(): p.read_text() for p in repo.rglob("*.py")}
    old, _ = interrupt(settings, paths, files)
    for k, v in setting.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    evaluate_module = sys.modules["evaluation.evaluate"]
    engine = OracleEngine(files)
    monkeypatch.setattr(evaluate_module, "run_plans", lambda settings, plans, **kw: {
        name: asyncio.run(evaluate_module.run(plan, engine, progress=False)) for name, plan in plans.items()})
    code = main(["eval", "--tenant", "acme", "--systems", "ft", *argv, "--resume", "--quiet", "--json"])
    err = capsys.readouterr().err
    assert code == 0 and "not resuming evaluation" in err and says in err and "starting a new run" in err
    assert len(engine.requests) == len(asked_tasks(engine)) * (1 if argv == ["--systems", "base"] else 2)
    assert [p for p, _ in records.partial_runs(paths)] == [old]       # kept for a run with its settings
