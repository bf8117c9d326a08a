"""`codetailor refresh`: bring a tenant's index and adapter up to date with its repositories.

For each source connected by URL: ask the remote for its branch's commit (one round
trip); when the index already describes that commit there is nothing to do, and
nothing heavy (torch, the embedder) is imported. Otherwise fetch, check out and
re-index incrementally (retrieval's `index_source`, which publishes a new index
generation atomically, so searches keep using the old one until then).

Then the retraining decision: the training code (files of a supported language)
that changed since the commits the last retraining saw, in estimated tokens,
against `sync.retrain_min_changed_tokens`. When it is reached (and not
--index-only), train a new adapter version (warm-started from the active one when
its rank and alpha match the configuration), evaluate it and let the guardrail
activate or refuse it; the active adapter serves until then. Each step is recorded
in work/refresh.json before it starts, so a killed refresh resumes the step it was
in (training itself resumes from its checkpoint) instead of starting over.
"""

from __future__ import annotations

import os
import sys
import time

from codetailor.artifacts import RefreshState
from codetailor.atomic import exclusive
from codetailor.errors import Busy, CodetailorError, NotFound, Unavailable
from codetailor.home import TenantPaths
from codetailor.languages import language_of
from codetailor.sources import SourceSpec, Sources, history_needed, read_state, sources_from_settings, write_state

CHARS_PER_TOKEN = 4   # code with a BPE tokenizer: an estimate, so the decision needs no tokenizer


class RefreshBusy(Busy):
    pass


class RefreshFailed(Unavailable):
    """Some source could not be refreshed; its previous index (and the adapter) keep serving."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def refresh_lock(paths: TenantPaths):
    """The tenant's refresh lock: one refresh (or source removal) at a time."""
    return exclusive(paths.work_dir / "refresh.lock",
                     lambda: RefreshBusy(f"tenant {paths.tenant!r} is being refreshed by another process"))


def _covers(have: str | None, need: str) -> bool:
    order = {"tip": 0, "since": 1, "full": 2}
    return have is not None and order.get(have, -1) >= order[need]


class _Progress:
    def __init__(self, tenant: str, enabled: bool):
        self.tenant, self.enabled = tenant, enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"refresh {self.tenant}: {message}", file=sys.stderr, flush=True)


def _refresh_source(settings, paths: TenantPaths, sources: Sources, spec: SourceSpec, say, progress: bool) -> dict:
    state = read_state(paths, spec)
    out = {"source": spec.name, "url": spec.url, "branch": spec.branch, "previous_commit": state.indexed_commit}
    now = time.time()
    try:
        say(f"{spec.name}: asking {spec.url} for {spec.branch or 'HEAD'}")
        remote = sources.remote_commit(spec)
        need = history_needed(spec.selection)
        if (remote == state.indexed_commit and state.branch == spec.branch and state.url == spec.url
                and _covers(state.history, need) and paths.source_clone(spec.name).is_dir()):
            write_state(paths, state, refreshed_at=now, last_error=None)
            return out | {"status": "unchanged", "commit": remote}
        say(f"{spec.name}: fetching {remote[:12]}")
        commit, history, _ = sources.fetch(paths, spec)
        state = write_state(paths, state, url=spec.url, branch=spec.branch, commit=commit, history=history,
                            fetched_at=time.time())
        say(f"{spec.name}: re-indexing")
        from retrieval import Selection, index_source

        summary = index_source(settings, paths, paths.source_clone(spec.name), source=spec.name,
                               selection=Selection.from_dict(spec.selection), progress=progress)
        write_state(paths, state, indexed_commit=commit, refreshed_at=time.time(), last_error=None)
        keep = ("generation", "files_indexed", "files_changed", "files_removed", "chunks", "chunks_embedded")
        from codetailor.sources import HISTORY_NOTE

        return out | {"status": "updated", "commit": commit, "history": HISTORY_NOTE[history],
                      "index": {k: summary[k] for k in keep if k in summary}}
    except CodetailorError as e:
        message = sources.credentials.scrub(spec.credential, str(e))
        write_state(paths, state, last_error=message, refreshed_at=now)
        say(f"{spec.name}: failed: {message}")
        return out | {"status": "failed", "error": message, "commit": state.indexed_commit}


def _drop_removed_sources(settings, paths: TenantPaths, sources: Sources, say) -> list[str]:
    """Finish removals that could not drop a source's index rows (the index was busy, or the
    removal was killed): the registry lists them, so a refresh with none reads nothing more."""
    gone = sources.registry.sources_to_drop(paths.tenant)
    if gone:
        from retrieval import drop_source

        for name in gone:
            say(f"{name}: dropping the index rows of a removed source")
            drop_source(settings, paths, name)
            sources.registry.source_dropped(paths.tenant, name)
    return gone


def changed_tokens(paths: TenantPaths, sources: Sources, specs: list[SourceSpec], since: dict[str, str],
                   now: dict[str, str]) -> int:
    """Estimated training tokens changed from the commits in `since` to those in `now` (a source
    without a recorded commit counts whole)."""
    chars = 0
    for spec in specs:
        if spec.name not in now:
            continue
        changed = sources.changed_files(paths, spec, since.get(spec.name), now[spec.name])
        chars += sum(n for p, n in changed.items() if language_of(p) is not None)
    return chars // CHARS_PER_TOKEN


def _write(paths: TenantPaths, state: RefreshState, **changes) -> RefreshState:
    state = state.model_copy(update={**changes, "updated_at": time.time()})
    state.write(paths.refresh_state)
    return state


def _warm_start_from(paths: TenantPaths, training) -> str | None:
    """The active adapter when the configured rank and alpha can continue it; else a cold start."""
    from codetailor.adapters import AdapterStore

    store = AdapterStore(paths)
    active = store.active()
    if active is None:
        return None
    hyper = store.meta(active).hyper_parameters
    return active if (hyper.get("rank"), hyper.get("alpha")) == (training.rank, training.alpha) else None


def _retrain(settings, paths: TenantPaths, state: RefreshState, say, progress: bool) -> tuple[RefreshState, dict]:
    """Train (or resume), evaluate and ask the guardrail; each phase recorded before it runs."""
    cfg = settings.sync
    report: dict = {}
    if state.phase == "train":
        from training import TrainOptions, train_tenant

        t = settings.training
        parent = _warm_start_from(paths, t)
        say("training a new adapter version" + (f" from {parent}" if parent else ""))
        trained = train_tenant(settings, paths, TrainOptions(
            rank=t.rank, alpha=t.alpha, epochs=t.epochs, time_budget=cfg.retrain_time_budget,
            replay_ratio=t.replay_ratio, progress=progress, warm_start=parent))
        report["train"] = {k: trained.get(k) for k in ("adapter_version", "train_tokens", "epochs", "seconds",
                                                        "heldout_loss")} | {"warm_start": parent}
        state = _write(paths, state, phase="eval", adapter=trained["adapter_version"])
    if state.phase == "eval":
        from evaluation import evaluate, public_summary

        say(f"evaluating {state.adapter}")
        result = public_summary(evaluate(settings, paths, adapter=state.adapter, n=cfg.eval_n, progress=progress))
        report["eval"] = {"cqi": result.get("cqi"), "chosen_system": result.get("chosen_system"), "n": result.get("n")}
        state = _write(paths, state, phase="activate")
    if state.phase == "activate":
        from evaluation.guardrail import GuardrailRefused, activate

        try:
            activate(settings, paths, state.adapter)
            decision = f"activated {state.adapter}"
        except GuardrailRefused as e:
            decision = f"kept the active adapter: {e}"
        say(decision)
        state = _write(paths, state, phase="idle", adapter=None, trained_commits=state.pending_commits,
                       pending_commits={}, measured_commits={}, measured_tokens=0, last_decision=decision)
        report["decision"] = decision
    return state, report


def refresh_tenant(settings, paths: TenantPaths, *, index_only: bool = False, progress: bool = True,
                   bars: bool | None = None) -> dict:
    """Refresh every connected source of the tenant, then decide on retraining. Returns the summary;
    raises RefreshFailed (after recording each source's error) when a source could not be refreshed.
    `progress`: one line per step on stderr; `bars`: indexing/training progress bars (default: progress)."""
    t0 = time.perf_counter()
    say = _Progress(str(paths.tenant), progress)
    progress = progress if bars is None else bars
    sources = sources_from_settings(settings)
    specs = sources.specs(paths)
    if not specs:
        raise NotFound(f"tenant {paths.tenant!r} has no sources connected by URL (add one with `codetailor source add`)")
    with refresh_lock(paths):
        dropped = _drop_removed_sources(settings, paths, sources, say)
        results = [_refresh_source(settings, paths, sources, spec, say, progress) for spec in specs]
        failed = [r for r in results if r["status"] == "failed"]
        current = {r["source"]: r["commit"] for r in results if r.get("commit")}
        state = RefreshState.read_or_none(paths.refresh_state) or RefreshState()
        summary = {"tenant": str(paths.tenant), "sources": results, "retrain": None}
        if dropped:
            summary["dropped_sources"] = dropped

        resumed = state.phase != "idle"
        tokens = None
        if not resumed:
            if state.measured_commits == current:
                tokens = state.measured_tokens
            else:
                tokens = changed_tokens(paths, sources, specs, state.trained_commits, current)
                state = _write(paths, state, measured_commits=current, measured_tokens=tokens)
        threshold = settings.sync.retrain_min_changed_tokens
        if resumed:
            reason = f"resuming an interrupted retraining at its {state.phase} step"
        elif failed:
            reason = "not retraining: a source could not be refreshed"
        elif current == state.trained_commits:
            reason = "not retraining: the last retraining saw these commits"
        elif tokens < threshold:
            reason = f"not retraining: {tokens} changed training tokens, below the threshold {threshold}"
        elif index_only:
            reason = f"not retraining (--index-only): {tokens} changed training tokens reach the threshold {threshold}"
        else:
            reason = f"retraining: {tokens} changed training tokens reach the threshold {threshold}"
            state = _write(paths, state, phase="train", adapter=None, pending_commits=current)
        if resumed and index_only:
            reason = f"an interrupted retraining waits at its {state.phase} step (run refresh without --index-only)"
        say(reason)
        summary["retrain"] = {"changed_tokens": tokens, "threshold": threshold, "reason": reason,
                              "decision": None}
        retrain_error = None
        if state.phase != "idle" and not index_only:
            try:
                state, report = _retrain(settings, paths, state, say, progress)
            except CodetailorError as e:
                # a refusal by training or evaluation itself (not a kill): record it and start over
                # from these commits next time rather than resuming a step that fails the same way
                retrain_error = f"retraining failed at its {state.phase} step: {e}"
                say(retrain_error)
                state = _write(paths, state, phase="idle", adapter=None, pending_commits={},
                               last_decision=retrain_error)
                report = {"decision": retrain_error}
            summary["retrain"].update(report)
            summary["retrain"]["decision"] = report.get("decision")
        summary["seconds"] = round(time.perf_counter() - t0, 3)
    if retrain_error:
        raise RefreshFailed(retrain_error, summary)
    if failed:
        raise RefreshFailed(f"{len(failed)} of {len(results)} sources failed: {failed[0]['error']}", summary)
    return summary


def tenants_with_sources(settings) -> list[TenantPaths]:
    from codetailor.tenants import registry_from_settings

    registry = registry_from_settings(settings)
    return [registry.home.tenant(t) for t in registry.home.tenant_ids()
            if any(s.get("url") for s in registry.sources(t).values())]


class Refresher:
    """`codetailor serve --refresh-interval`: re-index every tenant's connected sources on a timer,
    in a background thread of the serving process. Searches read each new index generation as
    soon as it is published; nothing waits for a refresh. Retraining (training, evaluation and
    an engine of its own) is left to `codetailor refresh` or the chart's CronJob."""

    def __init__(self, settings, interval: float, log=None):
        import threading

        self.settings, self.interval = settings, interval
        self.log = log or (lambda msg: print(f"codetailor: {msg}", file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="codetailor-refresh", daemon=True)

    def start(self) -> "Refresher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> list[dict]:
        out = []
        for paths in tenants_with_sources(self.settings):
            if self._stop.is_set():
                break
            try:
                summary = refresh_tenant(self.settings, paths, index_only=True, progress=False, bars=False)
                changed = [s["source"] for s in summary["sources"] if s["status"] == "updated"]
                if changed:
                    self.log(f"refreshed {paths.tenant}: re-indexed {', '.join(changed)}")
                out.append(summary)
            except CodetailorError as e:   # one line; the source's state records it for `source list`
                self.log(f"refresh of {paths.tenant} failed: {e}")
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()


class RefreshQueue:
    """Re-index requests from the admin API. One worker thread runs them one at a time, each as a
    `codetailor refresh --index-only` child process at a lower CPU priority: the serving process
    answers the request at once, never shares its interpreter (nor its memory) with a fetch or the
    indexer, and tenants take turns. A tenant is queued once at most; what a refresh did shows in
    its sources' state (`source list`, the ListSources RPC)."""

    def __init__(self, settings, log=None, command=None):
        import threading

        self.settings = settings
        self.log = log or (lambda msg: print(f"codetailor: {msg}", file=sys.stderr, flush=True))
        self.command = command or self._child
        self._lock = threading.Lock()
        self._waiting: list[str] = []
        self._running: str | None = None
        self._thread: threading.Thread | None = None

    def submit(self, tenant: str) -> tuple[bool, str]:
        """(queued now, what happens next)."""
        import threading

        with self._lock:
            if tenant == self._running:
                return False, "a refresh of this tenant is running; its sources' state shows the outcome"
            if tenant in self._waiting:
                return False, f"a refresh of this tenant is queued already ({self._waiting.index(tenant)} ahead of it)"
            ahead = len(self._waiting) + (self._running is not None)
            self._waiting.append(tenant)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="codetailor-refresh-queue", daemon=True)
                self._thread.start()
        return True, f"queued ({ahead} ahead of it); ListSources shows each source's outcome"

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._running = None
                    return
                self._running = self._waiting.pop(0)
                tenant = self._running
            try:
                rc, tail = self.command(tenant)
                if rc == 0:
                    self.log(f"refresh of {tenant} done")
                else:
                    self.log(f"refresh of {tenant} ended with exit code {rc}: {tail}")
            except Exception as e:   # the worker must outlive one bad run
                self.log(f"refresh of {tenant} could not run: {type(e).__name__}: {e}")

    def _child(self, tenant: str) -> tuple[int, str]:
        import subprocess

        env = {**os.environ, "CODETAILOR_HOME": str(self.settings.home)}
        # no preexec_fn (unsafe in a threaded server): the priority is lowered right after the start
        child = subprocess.Popen([sys.executable, "-m", "codetailor", "refresh", "--tenant", tenant,
                                  "--index-only", "--quiet"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            os.setpriority(os.PRIO_PROCESS, child.pid, 10)
        except OSError:   # it may have ended already
            pass
        _, err = child.communicate()
        lines = (err or "").strip().splitlines()
        return child.returncode, lines[-1] if lines else ""
