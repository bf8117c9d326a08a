"""The one place codetailor runs git, hardened for repositories tenants supply.

Indexing runs on our servers over code a tenant controls, and git obeys a
repository's own `.git/config`: `core.fsmonitor`, filter and diff drivers, a
pager, hooks, ssh and askpass commands and signature checks all name programs
git would run for us. Every call here therefore

- ignores system and global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null)
  and inherits no GIT_* variable of ours (GIT_DIR, GIT_EXTERNAL_DIFF, GIT_SSH_COMMAND...);
- overrides, with `-c` (command-line config beats the repository's), every key that
  names a program, including the per-driver `filter.<name>.*` and `diff.<name>.*`
  keys, whose names are first listed from the repository's config (listing only
  reads files);
- never prompts (GIT_TERMINAL_PROMPT=0, no askpass, no credential helper);
- refuses `ext::` transports always and the `file` transport when a URL came from a
  tenant (`tenant_url=True`), so a fetch cannot read our own disk;
- accepts a work tree owned by another user (`safe.directory=*`): the ownership
  check guards against the repository's config, which the overrides above already
  neutralise, and tenant folders are often owned by the uid that synced them.

The walls test forbids spawning git anywhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from codetailor.errors import CodetailorError


class GitError(CodetailorError):
    """git failed. The message carries git's last error line; `stderr` all of it (for callers
    that tell an authentication failure from a missing branch)."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


class GitMissing(GitError):
    pass


# Keys whose value is a program (or turns one on). Per-driver keys are added per repository.
_FIXED_OVERRIDES = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("core.sshCommand", "ssh"),
    ("core.askPass", ""),
    ("core.editor", "false"),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("sequence.editor", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("protocol.ext.allow", "never"),
    ("submodule.recurse", "false"),
    ("safe.directory", "*"),
)
# <section>.<driver>.<key> entries that name a program
_DRIVER_KEYS = {
    "filter": ("clean", "smudge", "process"),
    "diff": ("textconv", "command"),
    "merge": ("driver",),
}
# A URL a tenant supplied may use https and ssh only: file:// (or a local path) would read our
# own disk, and ext:: runs a command.
_TENANT_URL_OVERRIDES = (("protocol.allow", "never"), ("protocol.file.allow", "never"),
                         ("protocol.https.allow", "always"), ("protocol.ssh.allow", "always"))
# diff.external and textconv are refused once more by flag on the commands that diff.
_NO_EXT_DIFF = {"diff": ("--no-ext-diff", "--no-textconv"), "log": ("--no-ext-diff", "--no-textconv"),
                "show": ("--no-ext-diff", "--no-textconv"), "blame": ("--no-textconv",)}
_TIMEOUT_S = 600.0


def _binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise GitMissing("git is not installed (or not on PATH): codetailor needs it to read git repositories "
                         "and for --since / --max-bug-fixes; install git or index a plain folder")
    return git


# A URL a tenant supplied must not be fetched with the server's own identity: no ssh key or agent
# of the service user, and a home without ~/.netrc (which git's HTTP transport would read).
_NO_IDENTITY_SSH = ("ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none "
                    "-o IdentityFile=none")


def _env(extra: dict[str, str] | None = None, tenant_url: bool = False) -> dict[str, str]:
    """Our environment without any GIT_* of ours, hardened; `extra` adds per-call variables
    (credentials through GIT_CONFIG_COUNT/KEY/VALUE, a deploy key's GIT_SSH_COMMAND)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_ASKPASS"))}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat", PAGER="cat", LC_ALL="C",
               GIT_SSH_COMMAND="ssh -F /dev/null -o BatchMode=yes")
    if tenant_url:
        env.update(HOME="/nonexistent", XDG_CONFIG_HOME="/nonexistent", GIT_SSH_COMMAND=_NO_IDENTITY_SSH)
        env.pop("SSH_AUTH_SOCK", None)
    env.update(extra or {})
    return env


def _overrides(pairs) -> list[str]:
    out: list[str] = []
    for key, value in pairs:
        out += ["-c", f"{key}={value}"]
    return out


def _driver_overrides(git: str, cwd: Path) -> list[tuple[str, str]]:
    """`-c` pairs blanking every filter/diff/merge driver the repository's config defines.

    `git config --list` only reads config files (includes too) and runs nothing; outside a
    repository it fails, and then there is no repository config to neutralise."""
    args = [git, "--no-pager", *_overrides(_FIXED_OVERRIDES), "-C", str(cwd),
            "config", "--includes", "--name-only", "--null", "--list"]
    try:
        r = subprocess.run(args, capture_output=True, env=_env(), timeout=60)
    except subprocess.TimeoutExpired:
        raise GitError(f"git config timed out in {cwd}") from None
    if r.returncode != 0:
        return []
    pairs = []
    for name in r.stdout.decode("utf-8", "replace").split("\0"):
        section, _, rest = name.partition(".")
        driver, _, key = rest.rpartition(".")
        if driver and key.lower() in _DRIVER_KEYS.get(section.lower(), ()):
            pairs.append((f"{section}.{driver}.{key}", ""))
            if section.lower() == "filter":
                pairs.append((f"{section}.{driver}.required", "false"))
    return pairs


class Git:
    """Hardened git for one directory (None: no repository, e.g. `ls-remote` or `clone`); the
    repository's driver names are listed once, on open."""

    def __init__(self, cwd: Path | str | None, *, tenant_url: bool = False, env: dict[str, str] | None = None):
        self.cwd = Path(cwd) if cwd is not None else None
        git = _binary()
        pairs = list(_FIXED_OVERRIDES)
        if self.cwd is not None:
            pairs += _driver_overrides(git, self.cwd)
        if tenant_url:
            # the command contacts a URL a tenant supplied (clone, fetch): https and ssh only, so
            # `file:///`, a local path or `ext::` cannot pull in our own files or run a command
            pairs += _TENANT_URL_OVERRIDES
        self._env = _env(env, tenant_url)
        self._prefix = [git, "--no-pager", *_overrides(pairs), *(["-C", str(self.cwd)] if self.cwd else [])]

    def argv(self, *args: str) -> list[str]:
        extra = list(_NO_EXT_DIFF.get(args[0], ())) if args else []
        return [*self._prefix, *args[:1], *extra, *args[1:]]

    def run(self, *args: str, check: bool = True, timeout: float = _TIMEOUT_S) -> subprocess.CompletedProcess:
        """stdout/stderr as text (undecodable bytes replaced). `check`: a non-zero exit raises
        GitError with git's last error line (callers passing secrets in `env` must not echo it)."""
        try:
            r = subprocess.run(self.argv(*args), capture_output=True, text=True, encoding="utf-8",
                               errors="replace", env=self._env, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} did not finish within {timeout:.0f} s") from None
        if check and r.returncode != 0:
            lines = [ln.strip() for ln in r.stderr.splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
            last = (errors or lines or [f"exit {r.returncode}"])[-1]
            where = f" in {self.cwd}" if self.cwd else ""
            raise GitError(f"git {args[0]} failed{where}: {last}", r.stderr)
        return r

    def output(self, *args: str, timeout: float = _TIMEOUT_S) -> str:
        return self.run(*args, timeout=timeout).stdout

    def is_work_tree(self) -> bool:
        """Inside a git work tree and not ignored by it (a folder under an ignored .venv is plain)."""
        r = self.run("rev-parse", "--is-inside-work-tree", check=False)
        if r.returncode != 0 or r.stdout.strip() != "true":
            return False
        return self.run("check-ignore", "-q", ".", check=False).returncode != 0


def open_git(cwd: Path | str, *, tenant_url: bool = False) -> Git | None:
    """Hardened git for `cwd`, or None when git is not installed and `cwd` is not inside a
    git work tree (a plain folder needs no git). Inside one, a missing git is GitMissing."""
    if shutil.which("git") is None:
        here = Path(cwd).resolve()
        if any((d / ".git").exists() for d in (here, *here.parents)):
            _binary()
        return None
    return Git(cwd, tenant_url=tenant_url)


def run_git(cwd: Path | str | None, *args: str, env: dict[str, str] | None = None, tenant_url: bool = False,
            timeout: float | None = None) -> str:
    """One hardened git call; its stdout. `env` adds per-call variables (credentials);
    `tenant_url` restricts transports to https and ssh."""
    return Git(cwd, tenant_url=tenant_url, env=env).output(*args, timeout=timeout or _TIMEOUT_S)
