"""Credentials for fetching sources: https tokens and ssh deploy keys.

Stored like API keys: `credentials/<name>/` is 0700, the secret 0600, and no
command prints it. A credential never goes into a URL (git would keep it in
.git/config and repeat it in its error text): each git call gets it through its
environment only, as an `http.<origin>/.extraHeader` in GIT_CONFIG_COUNT/KEY/VALUE,
or as an ssh command naming the key file.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from codetailor.artifacts import CredentialRecord
from codetailor.atomic import atomic_write_bytes
from codetailor.errors import AlreadyExists, CodetailorError, NotFound
from codetailor.home import Home

RECORD = "credential.json"
SECRET = "secret"
KNOWN_HOSTS = "known_hosts"


class CredentialError(CodetailorError):
    pass


def _read_secret_file(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} file {path} does not exist") from None
    except OSError as e:
        raise CredentialError(f"cannot read {what} file {path}: {e.strerror}") from None
    return data


class CredentialStore:
    def __init__(self, home: Home):
        self.home = home

    def _dir(self, name: str) -> Path:
        return self.home.credential_dir(name)

    def _create_dir(self, name: str) -> Path:
        d = self._dir(name)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(d.parent, 0o700)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise AlreadyExists(f"credential {name!r} already exists (remove it first)") from None
        return d

    def add_token(self, name: str, token_file: Path, username: str | None = "x-access-token") -> CredentialRecord:
        """An https token read from `token_file`; sent as Basic `username:token`, or Bearer when username is None."""
        token = _read_secret_file(token_file, "token").decode("utf-8", "replace").strip()
        if not token:
            raise CredentialError(f"token file {token_file} is empty")
        if any(c in token for c in "\r\n\0") or not token.isprintable():
            raise CredentialError(f"token file {token_file} must hold one line of printable text")
        if username is not None and (":" in username or not username.isprintable() or not username):
            raise CredentialError("--username must be non-empty printable text without ':'")
        d = self._create_dir(name)
        atomic_write_bytes(d / SECRET, token.encode(), mode=0o600)
        record = CredentialRecord(name=name, kind="token", username=username, created_at=time.time())
        record.write(d / RECORD)
        return record

    def add_ssh(self, name: str, key_file: Path, known_hosts: Path | None = None) -> CredentialRecord:
        key = _read_secret_file(key_file, "ssh key")
        if b"PRIVATE KEY" not in key:
            raise CredentialError(f"{key_file} is not an ssh private key (OpenSSH or PEM)")
        hosts = _read_secret_file(known_hosts, "known_hosts") if known_hosts is not None else None
        d = self._create_dir(name)
        atomic_write_bytes(d / SECRET, key if key.endswith(b"\n") else key + b"\n", mode=0o600)
        if hosts is not None:
            atomic_write_bytes(d / KNOWN_HOSTS, hosts, mode=0o600)
        record = CredentialRecord(name=name, kind="ssh", known_hosts=hosts is not None, created_at=time.time())
        record.write(d / RECORD)
        return record

    def get(self, name: str) -> CredentialRecord:
        try:
            return CredentialRecord.read(self._dir(name) / RECORD)
        except FileNotFoundError:
            raise NotFound(f"unknown credential {name!r}") from None

    def list(self) -> list[CredentialRecord]:
        root = self.home.credentials_dir
        if not root.is_dir():
            return []
        return [CredentialRecord.read(p / RECORD) for p in sorted(root.iterdir())
                if not p.name.startswith(".") and (p / RECORD).is_file()]

    def remove(self, name: str) -> None:
        self.get(name)
        d = self._dir(name)
        graveyard = d.parent / f".{name}.{os.getpid()}.deleted.partial"
        os.replace(d, graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)

    def secret(self, name: str) -> str:
        """The token (for scrubbing it out of error text); never returned to a user."""
        return (self._dir(name) / SECRET).read_text(encoding="utf-8").strip()

    def git_env(self, name: str, url: str, strict_host_key_checking: str = "yes") -> dict[str, str]:
        """Environment that lets one git call authenticate to `url` with credential `name`."""
        record = self.get(name)
        if record.kind == "token":
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http"):
                raise CredentialError(f"credential {name!r} is a token: it needs an https URL, not {url!r}")
            token = self.secret(name)
            if record.username is None:
                header = f"Authorization: Bearer {token}"
            else:
                basic = base64.b64encode(f"{record.username}:{token}".encode()).decode()
                header = f"Authorization: Basic {basic}"
            # scoped to the source's origin: a redirect to another host does not get the token
            return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraHeader",
                    "GIT_CONFIG_VALUE_0": header}
        d = self._dir(name)
        ssh = ["ssh", "-F", "/dev/null", "-i", str(d / SECRET), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"StrictHostKeyChecking={strict_host_key_checking}"]
        if record.known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={d / KNOWN_HOSTS}"]
        return {"GIT_SSH_COMMAND": shlex.join(ssh)}

    def scrub(self, name: str | None, text: str) -> str:
        """`text` with the credential's secret (and its Basic encoding) masked, for errors and logs."""
        if not name:
            return text
        try:
            record = self.get(name)
        except (NotFound, CodetailorError):
            return text
        if record.kind != "token":
            return text
        token = self.secret(name)
        variants = {token}
        if record.username is not None:
            variants.add(base64.b64encode(f"{record.username}:{token}".encode()).decode())
        for v in variants:
            text = text.replace(v, "***")
        return text
