"""Where evaluation results live.

Each run is one EvaluationRecord `evals/<UTC time>-<id>.json` (written atomically:
a reader sees a whole result or none) holding the summary and every task's
completions, so a report can be re-rendered later. The adapter that was
evaluated gets the summary the guardrail needs (an EvaluationSummary in its
meta, through AdapterStore.record_evaluation), and the tenant's adapter state
records which system serving should use.

While a run generates, `evals/partial/<run id>.jsonl` keeps what it has done: a
PartialEvaluationHeader line, then one PartialEvaluationTask line per finished task,
appended and fsynced as the task's last system finishes. A kill can tear only the
last line, which a reader drops. `eval --resume` continues such a file
(evaluation/resume.py decides which); a finished run removes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from pydantic import ValidationError

from codetailor.adapters import AdapterStore
from codetailor.artifacts import (ArtifactError, EvaluationRecord, EvaluationSummary, PartialEvaluationHeader,
                                  PartialEvaluationTask)
from codetailor.atomic import atomic_write_text
from codetailor.errors import CodetailorError
from codetailor.home import TenantPaths
from codetailor.systems import System
from evaluation.runner import Completion


def new_eval_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def save(paths: TenantPaths, result: dict) -> Path:
    path = paths.evals_dir / f"{result['eval_id']}.json"
    EvaluationRecord.model_validate(result).write(path)
    return path


def eval_files(paths: TenantPaths) -> list[Path]:
    d = paths.evals_dir
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def latest(paths: TenantPaths) -> EvaluationRecord | None:
    files = eval_files(paths)
    return EvaluationRecord.read(files[-1]) if files else None


def record_in_adapter(store: AdapterStore, version: str, result: dict) -> EvaluationSummary | None:
    """Record the adapter systems' best CQI as the version's evaluation summary; None if none ran."""
    cqi = {s: v for s, v in result["cqi"].items() if System(s).uses_adapter}
    if not cqi:
        return None
    best = max(cqi, key=lambda s: cqi[s]["value"])
    summary = EvaluationSummary(eval_id=result["eval_id"], at=result["finished_at"], n=result["n"],
                                cqi=cqi[best]["value"], cqi_low=cqi[best]["low"], cqi_high=cqi[best]["high"],
                                system=System(best), cqi_by_system=cqi)
    store.record_evaluation(version, summary)
    return summary


def choose_system(cqi: dict[str, dict]) -> System:
    """The customised system with the highest CQI if it beats base (CQI > 5), else base."""
    custom = {s: v["value"] for s, v in cqi.items() if System(s).customised}
    if not custom:
        return System.BASE
    best = max(custom, key=lambda s: (custom[s], s))
    return System(best) if custom[best] > 5 else System.BASE


# -- runs in progress ------------------------------------------------------------------------------

def new_run_id() -> str:
    return new_eval_id().lower()  # a file name TenantPaths.partial_eval accepts


def partial_runs(paths: TenantPaths) -> list[tuple[Path, PartialEvaluationHeader]]:
    """The tenant's unfinished runs, newest first, with their headers."""
    d = paths.partial_evals_dir
    files = sorted(d.glob("*.jsonl"), reverse=True) if d.is_dir() else []
    return [(p, header_of(p)) for p in files if not p.name.startswith(".")]


def header_of(path: Path) -> PartialEvaluationHeader:
    with open(path, "rb") as f:
        first = f.readline()
    return PartialEvaluationHeader.from_dict(_whole_lines(first, path)[0][0], source=str(path))


def start_partial(paths: TenantPaths, header: PartialEvaluationHeader) -> Path:
    """A new run's file, holding its header only (written whole, so never torn)."""
    path = paths.partial_eval(header.run_id)
    atomic_write_text(path, json.dumps(header.to_dict(), sort_keys=True) + "\n")
    return path


@dataclasses.dataclass
class PartialRun:
    """An unfinished run opened by this process: its header, the tasks it has done, and the
    append-only file it keeps the next ones in."""

    path: Path
    header: PartialEvaluationHeader
    done: dict[str, dict[str, Completion]]   # task id -> system -> completion
    seconds: float                            # generation time of the runs before this one
    run: int                                  # this invocation's number, 1 for a new run
    fd: int

    def append(self, task_id: str, completions: dict[str, Completion], seconds: float) -> None:
        line = PartialEvaluationTask(task=task_id, seconds=round(seconds, 1), run=self.run,
                                     completions={s: dataclasses.asdict(c) for s, c in completions.items()})
        os.write(self.fd, (json.dumps(line.model_dump(mode="json"), sort_keys=True) + "\n").encode())
        os.fsync(self.fd)  # kept means on disk: the point of the file is surviving a kill
        self.done[task_id] = completions


@contextlib.contextmanager
def open_partial(path: Path, busy: Callable[[], CodetailorError]) -> Iterator[PartialRun]:
    """Lock the run at `path` for this process (or raise `busy()`), drop a torn last line, and
    yield it for appending. The kernel drops the lock when the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        lines, kept = _whole_lines(Path(path).read_bytes(), path)
        os.ftruncate(fd, kept)  # the next append starts a line of its own
        header = PartialEvaluationHeader.from_dict(lines[0], source=str(path))
        done, seconds, run = {}, 0.0, 0
        for number, entry in enumerate(lines[1:], 2):
            try:
                t = PartialEvaluationTask.model_validate(entry)
            except ValidationError:
                raise ArtifactError(f"{path}: line {number} is not a task's completions; remove the file "
                                    "to start anew") from None
            done[t.task] = {s: _completion(c) for s, c in t.completions.items()}
            seconds, run = max(seconds, t.seconds), max(run, t.run)
        yield PartialRun(Path(path), header, done, seconds, run + 1, fd)
    finally:
        os.close(fd)


def _whole_lines(data: bytes, path: Path) -> tuple[list, int]:
    """The parsed lines a kill cannot have torn, and the bytes they span. Only the last line can
    be torn: one without its newline, or a final one that does not parse. The header is written
    whole, so a damaged one, like any damaged line before the last, is refused."""
    lines, end = [], 0
    raw = data.split(b"\n")
    for number, line in enumerate(raw[:-1], 1):   # raw[-1] follows the last newline: torn or empty
        try:
            lines.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(raw) - 1 and number > 1:
                break
            raise ArtifactError(f"{path}: line {number} is damaged; remove the file to start anew") from None
        end += len(line) + 1
    if not lines:
        raise ArtifactError(f"{path} has no header line; remove the file to start anew")
    return lines, end


def _completion(fields: dict) -> Completion:
    c = Completion(**fields)
    return dataclasses.replace(c, snippets=tuple(c.snippets), definitions=tuple(c.definitions))


def remove_partial(run: PartialRun) -> None:
    with contextlib.suppress(FileNotFoundError):
        run.path.unlink()


def remove_idle_partial(path: Path) -> bool:
    """Remove an unfinished run no process is continuing (one that is, holds its lock: kept)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink(missing_ok=True)   # under the lock: nobody opens it to continue in between
        return True
    finally:
        os.close(fd)
