"""Sources connected by URL: a tenant's repositories that codetailor fetches itself.

A connected source is a named source in tenant.json with a `url` (and optionally a
branch, a credential and the selection knobs it is indexed with); its clone lives in
the tenant's `sources/<name>/` and `sources/<name>.state.json` records where it
stands. The clone has no remote: the URL is passed on each fetch, so nothing about
the origin (nor any credential) is written into .git/config.

Clones hold only the history the selection needs: the tip commit by default,
commits back to the --since cutoff (plus one older commit, so the boundary counts
as old) for recency, the whole history for --max-bug-fixes.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codetailor.artifacts import SourceState
from codetailor.credentials import CredentialStore
from codetailor.errors import AlreadyExists, CodetailorError, NotFound, QuotaExceeded, Unavailable
from codetailor.home import Home, TenantPaths
from codetailor.names import SourceName
from codetailor.tenants import Registry

_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[^/].*$")   # git@host:org/repo.git
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![./])$")


class SourceError(CodetailorError):
    pass


class FetchFailed(Unavailable):
    """A source's repository could not be reached or read (network, credentials, missing branch)."""


def check_url(url: str, *, tenant_facing: bool) -> str:
    """The URL to record, or SourceError. Tenants may name https and ssh only; the operator
    may also name a local repository (path or file://) or plain http (a loopback mirror)."""
    if not isinstance(url, str) or not url or url.startswith("-") or any(c in url for c in "\r\n\0 "):
        raise SourceError(f"invalid source URL {url!r}")
    if _SCP_LIKE.match(url) and "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme in ("https", "http", "ssh"):
        if parts.password is not None or (parts.username and parts.scheme != "ssh"):
            raise SourceError("credentials never go into a URL (git would store them in .git/config); "
                              "add one with `codetailor credential add` and pass --credential")
        if not parts.hostname or not parts.hostname[0].isalnum():
            raise SourceError(f"source URL {url!r} has no valid host")
        if tenant_facing and parts.scheme == "http":
            raise SourceError("a tenant's source must be https or ssh, not http")
        return url
    if tenant_facing:
        raise SourceError(f"a tenant's source must be an https or ssh URL, got {url!r}")
    if parts.scheme == "file":
        return url
    if parts.scheme == "" and Path(url).is_dir():
        return str(Path(url).resolve())
    raise SourceError(f"source URL {url!r} is not https, ssh, file:// or an existing local folder")


def check_branch(branch: str | None) -> str | None:
    if branch is not None and not _BRANCH.match(branch):
        raise SourceError(f"invalid branch name {branch!r}")
    return branch


def history_needed(selection: dict | None) -> str:
    """'full', 'since' or 'tip': the history the source's selection knobs read."""
    selection = selection or {}
    if selection.get("max_bug_fixes") is not None:
        return "full"
    if selection.get("since"):
        return "since"
    return "tip"


HISTORY_NOTE = {"tip": "shallow clone (the tip commit only)",
                "since": "history back to the --since cutoff (recency needs commit dates)",
                "full": "full history (--max-bug-fixes counts every bug-fix commit)"}


@dataclass
class SourceSpec:
    name: str
    url: str
    branch: str | None
    credential: str | None
    selection: dict | None
    tenant_facing: bool
    location: str

    @classmethod
    def from_record(cls, name: str, record: dict) -> "SourceSpec":
        return cls(name, record["url"], record.get("branch"), record.get("credential"), record.get("selection"),
                   bool(record.get("tenant_facing")), record["location"])


class Sources:
    """Connect, list and disconnect a tenant's sources; fetch them."""

    def __init__(self, home: Home, registry: Registry, strict_host_key_checking: str = "yes",
                 git_timeout: float | None = 600, mounted_credentials: Path | None = None, settings=None):
        self.settings = settings   # for dropping a removed source's index rows
        self.home = home
        self.registry = registry
        self.credentials = CredentialStore(home, mounted_credentials)
        self.strict = strict_host_key_checking
        self.timeout = git_timeout

    # -- registry -------------------------------------------------------------------------
    def add(self, tenant: str, name: str, url: str, *, branch: str | None = None, credential: str | None = None,
            selection: dict | None = None, tenant_facing: bool = False) -> dict:
        paths = self.registry.tenant(tenant)
        name = SourceName(name)
        url = check_url(url, tenant_facing=tenant_facing)
        branch = check_branch(branch)
        if credential is not None:
            if tenant_facing:   # a tenant names only credentials the operator granted to it
                self.credentials.granted(credential, str(paths.tenant))
            self.credentials.git_env(credential, url, self.strict)   # unknown or wrong kind: fail now
        existing = self.registry.sources(paths.tenant)
        if name in existing:
            raise AlreadyExists(f"tenant {tenant!r} already has a source {name!r} (remove it first)")
        cap = self.settings.sync.max_tenant_sources if self.settings is not None else None
        if tenant_facing and cap is not None and len(existing) >= cap:
            raise QuotaExceeded(f"tenant {tenant!r} already has {len(existing)} sources, the most "
                                f"sync.max_tenant_sources={cap} allows (remove one first)")
        self.registry.add_source(paths.tenant, name, str(paths.source_clone(name)), url=url, branch=branch,
                                 credential=credential, selection=selection, tenant_facing=tenant_facing)
        return {"tenant": str(paths.tenant), "source": name, "url": url, "branch": branch, "credential": credential,
                "history": HISTORY_NOTE[history_needed(selection)]}

    def specs(self, paths: TenantPaths) -> list[SourceSpec]:
        return [SourceSpec.from_record(n, r) for n, r in sorted(self.registry.sources(paths.tenant).items())
                if r.get("url")]

    def list(self, tenant: str) -> list[dict]:
        paths = self.registry.tenant(tenant)
        rows = []
        for name, r in sorted(self.registry.sources(paths.tenant).items()):
            state = SourceState.read_or_none(paths.source_state(name)) if r.get("url") else None
            rows.append({"source": name, "url": r.get("url"), "location": r.get("location"),
                         "branch": r.get("branch"), "credential": r.get("credential"),
                         "last_commit": state.indexed_commit if state else None,
                         "last_refresh": state.refreshed_at if state else None,
                         "last_error": state.last_error if state else None})
        return rows

    def remove(self, tenant: str, name: str) -> dict:
        """Disconnect a source: its record, its clone and its rows in the index (BM25, vectors,
        symbols), so the other sources stay searchable without a rebuild. Holds the tenant's refresh
        lock, so no refresh re-indexes the source meanwhile. When the rows cannot be dropped now
        (an index run holds the index, or this is killed first), the registry keeps the name in
        its `sources_to_drop` and the next refresh drops them."""
        from codetailor.refresh import refresh_lock

        paths = self.registry.tenant(tenant)
        name = SourceName(name)
        with refresh_lock(paths):
            self.registry.remove_source(paths.tenant, name)
            clone = paths.source_clone(name)
            if clone.exists():
                graveyard = clone.parent / f".{name}.deleted.partial"
                shutil.rmtree(graveyard, ignore_errors=True)
                clone.rename(graveyard)
                shutil.rmtree(graveyard, ignore_errors=True)
            paths.source_state(name).unlink(missing_ok=True)
            index = self._drop_index_rows(paths, name)
        return {"tenant": str(paths.tenant), "removed": name, "index": index}

    def _drop_index_rows(self, paths: TenantPaths, name: str) -> dict:
        from retrieval import drop_source

        if self.settings is None:
            raise ValueError("Sources needs settings to drop a source's index rows")
        try:
            dropped = drop_source(self.settings, paths, name)
        except CodetailorError as e:   # the index is busy, the vector store is down, ...
            return {"dropped": False, "reason": f"{e}; the next refresh drops the source's rows"}
        self.registry.source_dropped(paths.tenant, name)
        return {"dropped": True} | {k: dropped[k] for k in ("generation", "files_removed", "chunks_removed")}

    # -- git ------------------------------------------------------------------------------
    def _env(self, spec: SourceSpec) -> dict:
        return self.credentials.git_env(spec.credential, spec.url, self.strict) if spec.credential else {}

    def _git(self, spec: SourceSpec, cwd, *args: str) -> str:
        from retrieval.git import GitError, run_git

        try:
            return run_git(cwd, *args, env=self._env(spec), tenant_url=spec.tenant_facing, timeout=self.timeout)
        except GitError as e:
            message = self.credentials.scrub(spec.credential, str(e))
            raise FetchFailed(self._explain(spec, message, e.stderr)) from None

    @staticmethod
    def _explain(spec: SourceSpec, message: str, stderr: str = "") -> str:
        low = (message + "\n" + stderr).lower()
        if any(s in low for s in ("authentication failed", "could not read username", "terminal prompts disabled",
                                  "permission denied (publickey", "returned error: 401",
                                  "returned error: 403")):
            how = f"credential {spec.credential!r}" if spec.credential else "no credential (add one with --credential)"
            return f"source {spec.name!r}: authentication failed for {spec.url} with {how}"
        if "host key verification failed" in low:
            return (f"source {spec.name!r}: host key verification failed for {spec.url} (store the host's key with "
                    f"`credential add --known-hosts`, or set sync.ssh_strict_host_key_checking=accept-new)")
        if "couldn't find remote ref" in low or "not our ref" in low:
            return f"source {spec.name!r}: branch {spec.branch or 'HEAD'!r} does not exist at {spec.url}"
        return f"source {spec.name!r}: {message}"

    def _ref(self, spec: SourceSpec) -> str:
        return f"refs/heads/{spec.branch}" if spec.branch else "HEAD"

    def remote_commit(self, spec: SourceSpec) -> str:
        """The commit the source's branch points at now: one round trip, no objects transferred."""
        out = self._git(spec, None, "ls-remote", "--", spec.url, self._ref(spec))
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == self._ref(spec):
                return sha
        raise FetchFailed(f"source {spec.name!r}: branch {spec.branch or 'HEAD'!r} does not exist at {spec.url}")

    def fetch(self, paths: TenantPaths, spec: SourceSpec) -> tuple[str, str, str | None]:
        """Fetch the source's branch into its clone and check it out: (commit, history, previous commit)."""
        clone = paths.source_clone(spec.name)
        paths.sources_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (clone / ".git").is_dir():
            shutil.rmtree(clone, ignore_errors=True)
            clone.mkdir(mode=0o700)
            self._git(spec, clone, "init", "-q")
        previous = None
        try:
            previous = self._git(spec, clone, "rev-parse", "-q", "--verify", "HEAD^{commit}").strip() or None
        except FetchFailed:
            pass
        need = history_needed(spec.selection)
        target = "refs/codetailor/source"
        base = ["fetch", "--no-tags", "--no-recurse-submodules", "--force", "--quiet"]
        refspec = f"+{self._ref(spec)}:{target}"
        shallow = (clone / ".git" / "shallow").exists()
        if need == "full":
            self._git(spec, clone, *base, *(["--unshallow"] if shallow else []), "--", spec.url, refspec)
        elif need == "since":
            from retrieval.selection import parse_duration

            cutoff = int(time.time() - parse_duration(spec.selection["since"]))
            try:
                self._git(spec, clone, *base, f"--shallow-since={cutoff}", "--", spec.url, refspec)
                # one commit older than the window: the boundary commit then dates files as old
                self._git(spec, clone, *base, "--deepen=1", "--", spec.url, refspec)
            except FetchFailed:   # no commit inside the window: the tip alone is older than it
                self._git(spec, clone, *base, "--depth=1", "--", spec.url, refspec)
        else:
            self._git(spec, clone, *base, "--depth=1", "--", spec.url, refspec)
        commit = self._git(spec, clone, "rev-parse", "--verify", f"{target}^{{commit}}").strip()
        # core.symlinks=false: a link in the tenant's tree becomes a small text file, never a way out
        self._git(spec, clone, "-c", "core.symlinks=false", "checkout", "-q", "--force", "--detach", commit)
        self._git(spec, clone, "clean", "-q", "-ffdx")
        return commit, need, previous

    def changed_files(self, paths: TenantPaths, spec: SourceSpec, old: str | None, new: str) -> dict[str, int]:
        """Changed characters per path between two commits of the clone (everything when `old` is
        unknown or no longer in the clone): added plus removed line text."""
        clone = paths.source_clone(spec.name)
        if old:
            try:
                self._git(spec, clone, "cat-file", "-e", f"{old}^{{commit}}")
            except FetchFailed:
                old = None
        if old is None:
            old = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"   # git's empty tree
        out = self._git(spec, clone, "diff", "--no-renames", "--unified=0", "--no-color", old, new, "--")
        changed: dict[str, int] = {}
        path, in_header = None, False
        for line in out.splitlines():
            if line.startswith("diff --git "):
                path, in_header = None, True
            elif in_header:
                if line.startswith("@@"):
                    in_header = False
                elif line.startswith(("--- a/", "+++ b/")):
                    path = line[6:]
            elif path and line[:1] in "+-":
                changed[path] = changed.get(path, 0) + len(line) - 1
        return changed


def sources_from_settings(settings) -> Sources:
    from codetailor.tenants import registry_from_settings

    return Sources(Home(settings.home), registry_from_settings(settings),
                   strict_host_key_checking=settings.sync.ssh_strict_host_key_checking,
                   git_timeout=settings.sync.git_timeout, mounted_credentials=settings.sync.credentials_dir,
                   settings=settings)


def read_state(paths: TenantPaths, spec: SourceSpec) -> SourceState:
    return SourceState.read_or_none(paths.source_state(spec.name)) or SourceState(source=spec.name, url=spec.url)


def write_state(paths: TenantPaths, state: SourceState, **changes) -> SourceState:
    state = state.model_copy(update=changes)
    paths.sources_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state.write(paths.source_state(state.source))
    return state


def require_source(sources: Sources, paths: TenantPaths, name: str) -> SourceSpec:
    for spec in sources.specs(paths):
        if spec.name == name:
            return spec
    raise NotFound(f"tenant {paths.tenant!r} has no source connected by URL named {name!r}")
