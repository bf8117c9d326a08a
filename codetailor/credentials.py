"""Credentials for fetching sources: https tokens and ssh deploy keys.

Stored like API keys: `credentials/<name>/` is 0700, the secret 0600, and no
command prints it. A credential never goes into a URL (git would keep it in
.git/config and repeat it in its error text): each git call gets it through its
environment only, as an `http.<origin>/.extraHeader` in GIT_CONFIG_COUNT/KEY/VALUE,
or as an ssh command naming the key file.

A deployment may also mount credentials read-only (a Kubernetes Secret) at
`sync.credentials_dir`: `<name>.token` (with an optional `<name>.username`, or
`<name>.bearer` to send a Bearer header) or `<name>.ssh-key` (with an optional
`<name>.known_hosts`), and `<name>.tenant` naming the tenant that may use it. Those are found by
name like stored ones and cannot be removed here.

A credential granted to a tenant (`--tenant`) may be named by that tenant's admins through the
admin API, and by no other tenant; the rest are the operator's (the CLI) only.
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
from codetailor.atomic import atomic_write_bytes, staging_dir
from codetailor.errors import AlreadyExists, CodetailorError, NotFound
from codetailor.home import Home
from codetailor.names import validate_name

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
    def __init__(self, home: Home, mounted: Path | None = None):
        self.home = home
        self.mounted = Path(mounted) if mounted else None

    def _mounted(self, name: str) -> tuple[CredentialRecord, Path, Path | None] | None:
        """(record, secret file, known_hosts file) of a credential in the mounted folder, if any."""
        if self.mounted is None:
            return None
        base = self.mounted / validate_name("credential", name)
        token, key = base.with_name(f"{name}.token"), base.with_name(f"{name}.ssh-key")
        tenant_file = base.with_name(f"{name}.tenant")
        tenant = tenant_file.read_text().strip() or None if tenant_file.is_file() else None
        if token.is_file():
            user_file = base.with_name(f"{name}.username")
            username = None if base.with_name(f"{name}.bearer").exists() else (
                user_file.read_text().strip() if user_file.is_file() else "x-access-token")
            return (CredentialRecord(name=name, kind="token", username=username, created_at=token.stat().st_mtime,
                                     tenant=tenant), token, None)
        if key.is_file():
            hosts = base.with_name(f"{name}.known_hosts")
            return (CredentialRecord(name=name, kind="ssh", known_hosts=hosts.is_file(),
                                     created_at=key.stat().st_mtime, tenant=tenant),
                    key, hosts if hosts.is_file() else None)
        return None

    def _dir(self, name: str) -> Path:
        return self.home.credential_dir(name)

    def _publish(self, record: CredentialRecord, files: dict[str, bytes]) -> CredentialRecord:
        """Write the credential's files into a private staging folder renamed into place at the end,
        so a killed `credential add` leaves either nothing or the whole credential."""
        d = self._dir(record.name)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(d.parent, 0o700)
        if d.exists() or self._mounted(record.name) is not None:
            raise AlreadyExists(f"credential {record.name!r} already exists (remove it first)")
        with staging_dir(d) as tmp:
            os.chmod(tmp, 0o700)
            for name, data in files.items():
                atomic_write_bytes(tmp / name, data, mode=0o600)
            record.write(tmp / RECORD)
        return record

    def add_token(self, name: str, token_file: Path, username: str | None = "x-access-token",
                  tenant: str | None = None) -> CredentialRecord:
        """An https token read from `token_file`; sent as Basic `username:token`, or Bearer when username is None.
        `tenant`: the tenant whose admins may name it (else the operator only)."""
        validate_name("credential", name)
        token = _read_secret_file(token_file, "token").decode("utf-8", "replace").strip()
        if not token:
            raise CredentialError(f"token file {token_file} is empty")
        if any(c in token for c in "\r\n\0") or not token.isprintable():
            raise CredentialError(f"token file {token_file} must hold one line of printable text")
        if username is not None and (":" in username or not username.isprintable() or not username):
            raise CredentialError("--username must be non-empty printable text without ':'")
        return self._publish(CredentialRecord(name=name, kind="token", username=username, created_at=time.time(),
                                              tenant=tenant), {SECRET: token.encode()})

    def add_ssh(self, name: str, key_file: Path, known_hosts: Path | None = None,
                tenant: str | None = None) -> CredentialRecord:
        validate_name("credential", name)
        key = _read_secret_file(key_file, "ssh key")
        if b"PRIVATE KEY" not in key:
            raise CredentialError(f"{key_file} is not an ssh private key (OpenSSH or PEM)")
        files = {SECRET: key if key.endswith(b"\n") else key + b"\n"}
        if known_hosts is not None:
            files[KNOWN_HOSTS] = _read_secret_file(known_hosts, "known_hosts")
        return self._publish(CredentialRecord(name=name, kind="ssh", known_hosts=known_hosts is not None,
                                              created_at=time.time(), tenant=tenant), files)

    def get(self, name: str) -> CredentialRecord:
        try:
            return CredentialRecord.read(self._dir(name) / RECORD)
        except FileNotFoundError:
            mounted = self._mounted(name)
            if mounted is None:
                raise NotFound(f"unknown credential {name!r}") from None
            return mounted[0]

    def granted(self, name: str, tenant: str) -> CredentialRecord:
        """Credential `name` if it is granted to `tenant`; otherwise NotFound, worded as for an
        unknown name, so a tenant learns nothing of the operator's or other tenants' credentials."""
        try:
            record = self.get(name)
        except CodetailorError:
            record = None
        if record is None or record.tenant != tenant:
            raise NotFound(f"tenant {tenant!r} has no credential {name!r} (the operator grants one with "
                           f"`codetailor credential add {name} --tenant {tenant} ...`)")
        return record

    def _files(self, name: str) -> tuple[Path, Path | None]:
        """The secret file and the known_hosts file (if any) of credential `name`."""
        d = self._dir(name)
        if (d / RECORD).is_file():
            return d / SECRET, (d / KNOWN_HOSTS if (d / KNOWN_HOSTS).is_file() else None)
        mounted = self._mounted(name)
        if mounted is None:
            raise NotFound(f"unknown credential {name!r}")
        return mounted[1], mounted[2]

    def list(self) -> list[CredentialRecord]:
        root = self.home.credentials_dir
        stored = [CredentialRecord.read(p / RECORD) for p in sorted(root.iterdir())
                  if not p.name.startswith(".") and (p / RECORD).is_file()] if root.is_dir() else []
        names = {r.name for r in stored}
        if self.mounted is not None and self.mounted.is_dir():
            for p in sorted(self.mounted.iterdir()):
                name, _, ext = p.name.partition(".")
                if ext in ("token", "ssh-key") and name not in names:
                    try:
                        stored.append(self.get(name))
                        names.add(name)
                    except CodetailorError:   # an odd file name in the mount: not a credential
                        pass
        return sorted(stored, key=lambda r: r.name)

    def remove(self, name: str) -> None:
        self.get(name)
        d = self._dir(name)
        if not d.is_dir():
            raise CredentialError(f"credential {name!r} is mounted from {self.mounted} (remove it from there)")
        graveyard = d.parent / f".{name}.{os.getpid()}.deleted.partial"
        os.replace(d, graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)

    def secret(self, name: str) -> str:
        """The token (for scrubbing it out of error text); never returned to a user."""
        return self._files(name)[0].read_text(encoding="utf-8").strip()

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
        key, hosts = self._files(name)
        ssh = ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-o", "BatchMode=yes",
               "-o", f"StrictHostKeyChecking={strict_host_key_checking}"]
        if hosts is not None:
            ssh += ["-o", f"UserKnownHostsFile={hosts}"]
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
