"""The one place codetailor spawns git.

A tenant's repository is hostile input, and git obeys a repository's own
`.git/config`: fsmonitor, hooks, pagers, diff/textconv and filter drivers, an ssh
command, an askpass program and credential helpers are all commands it may run.
Every call therefore ignores system and global config, never prompts, and
switches each of those keys off on the command line (`-c` beats the repository's
config). A URL a tenant supplied is fetched with `protocol.file.allow=never` and
no submodules, so it cannot read the server's own disk.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from codetailor.errors import CodetailorError


class GitError(CodetailorError):
    """git failed or is missing. The message carries git's own error line; `stderr` all of it."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


# Keys that make git run a program; each is reset to "nothing" on every call.
_SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.sshCommand=",
    "core.askPass=",
    "core.editor=true",
    "credential.helper=",
    "uploadpack.packObjectsHook=",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
)
# diff.external cannot be reset with -c; these commands get flags that refuse it and textconv.
_NO_EXT_DIFF = {"diff": ["--no-ext-diff", "--no-textconv"], "log": ["--no-ext-diff", "--no-textconv"],
                "show": ["--no-ext-diff", "--no-textconv"], "blame": ["--no-textconv"]}
# A tenant may name https and ssh repositories only: file:// (or a local path) would read the
# server's disk, and ext:: runs a command.
_TENANT_URL_CONFIG = ("protocol.allow=never", "protocol.file.allow=never", "protocol.https.allow=always",
                      "protocol.ssh.allow=always")


def _driver_overrides(cwd: Path | None) -> list[str]:
    """Switch off every filter/diff/merge driver the repository's config names."""
    if cwd is None or not (Path(cwd) / ".git" / "config").is_file():
        return []
    out = []
    try:
        text = (Path(cwd) / ".git" / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for kind, name in re.findall(r'^\s*\[\s*(filter|diff|merge)\s+"([^"\n]*)"\s*\]', text, re.MULTILINE | re.IGNORECASE):
        kind = kind.lower()
        keys = {"filter": ("clean", "smudge", "process"), "diff": ("textconv", "command"), "merge": ("driver",)}[kind]
        out += [f"{kind}.{name}.{k}=" for k in keys]
        if kind == "filter":
            out.append(f"{kind}.{name}.required=false")
    return out


# A URL a tenant supplied must not be fetched with the server's own identity: no ssh key or agent
# of the service user, and a home without ~/.netrc (which git's HTTP transport would read).
_NO_IDENTITY_SSH = "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o IdentityFile=none"


def git_env(extra: dict | None = None, tenant_url: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0",
               GIT_ASKPASS="", SSH_ASKPASS="", GIT_PAGER="cat", LC_ALL="C")
    if tenant_url:
        env.update(HOME="/nonexistent", XDG_CONFIG_HOME="/nonexistent", GIT_SSH_COMMAND=_NO_IDENTITY_SSH)
        env.pop("SSH_AUTH_SOCK", None)
    else:
        env["GIT_SSH_COMMAND"] = "ssh -F /dev/null -o BatchMode=yes"
    env.update(extra or {})
    return env


def run_git(cwd: Path | str | None, *args: str, env: dict | None = None, tenant_url: bool = False,
            timeout: float | None = None) -> str:
    """Run `git args...` in `cwd` (None: no repository) hardened as above; return stdout.

    `env` adds variables (per-call credentials: GIT_CONFIG_COUNT/KEY/VALUE, GIT_SSH_COMMAND);
    `tenant_url` restricts transports to https and ssh. Raises GitError with git's last
    stderr line; callers that pass secrets in `env` must not echo it.
    """
    config = [*_SAFE_CONFIG, *(_TENANT_URL_CONFIG if tenant_url else ()), *_driver_overrides(cwd)]
    cmd = ["git"]
    for c in config:
        cmd += ["-c", c]
    args = list(args)
    if args and args[0] in _NO_EXT_DIFF:
        args[1:1] = _NO_EXT_DIFF[args[0]]
    cmd += args
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, env=git_env(env, tenant_url), timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GitError("git is not installed (it is needed to read repositories)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0] if args else ''} timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        stderr = r.stderr.decode("utf-8", "replace")
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
        line = (errors or lines or [f"exit {r.returncode}"])[-1]
        raise GitError(f"git {args[0] if args else ''} failed: {line}", stderr)
    return r.stdout.decode("utf-8", "replace")
