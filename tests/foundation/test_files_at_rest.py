"""Files at rest: tenant data is owner-only (directories 0700, files 0600), and so are keys
and the pepper, whatever the umask; an empty pepper is refused rather than used."""

from __future__ import annotations

import os
import stat

import pytest

from codetailor.atomic import atomic_write_json, atomic_write_text, staging_dir
from codetailor.config import load_settings
from codetailor.errors import ConfigError
from codetailor.home import Home
from codetailor.tenants import Registry


@pytest.fixture
def open_umask():
    old = os.umask(0o022)  # a typical login umask: without care, files come out 0644
    yield
    os.umask(old)


def _private(root) -> list[str]:
    """Paths under `root` that another local user could read or enter."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            p = os.path.join(dirpath, name)
            if os.lstat(p).st_mode & 0o077:
                bad.append(f"{p} {stat.filemode(os.lstat(p).st_mode)}")
    return bad


def test_atomic_writes_are_owner_only(tmp_path, open_umask):
    atomic_write_json(tmp_path / "a" / "b" / "x.json", {"v": 1})
    atomic_write_text(tmp_path / "y.txt", "secret code")
    with staging_dir(tmp_path / "v0001") as tmp:
        (tmp / "inside").write_text("tenant code")
    assert _private(tmp_path / "a") == []
    assert (tmp_path / "y.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "v0001").stat().st_mode & 0o777 == 0o700


def test_tenants_keys_and_pepper_are_owner_only(tmp_path, open_umask):
    home = Home(tmp_path / "home")
    reg = Registry(home)
    paths, key = reg.create_tenant("acme")
    reg.authenticate(key)
    assert paths.root.stat().st_mode & 0o777 == 0o700
    for p in (home.tenants_dir, home.keys_dir, home.secrets_dir):
        assert p.stat().st_mode & 0o777 == 0o700, p
    assert _private(home.root / "tenants") == [] and _private(home.keys_dir) == []
    assert _private(home.secrets_dir) == []


def test_the_cli_makes_library_written_files_owner_only(tmp_home, open_umask):
    """The CLI sets an owner-only umask, so what PEFT, bm25s or Qdrant write under a tenant is private too."""
    from codetailor.cli import main, tenants

    def create_and_write(args):
        out = create(args)
        with open(Home(tmp_home).tenant("acme").root / "by-a-library.bin", "w") as f:  # a plain open()
            f.write("x")
        return out

    import unittest.mock

    create = tenants._create
    with unittest.mock.patch.object(tenants, "_create", create_and_write):
        assert main(["tenant", "create", "acme"]) == 0
    assert _private(Home(tmp_home).tenant("acme").root) == []
    assert os.umask(0o022) == 0o022  # the command's umask ended with it


def test_an_empty_pepper_file_is_refused(tmp_path):
    home = Home(tmp_path)
    home.secrets_dir.mkdir(parents=True)
    (home.secrets_dir / "pepper").write_text("\n")
    reg = Registry(home)
    with pytest.raises(ConfigError, match="pepper is empty"):
        reg.create_tenant("acme")
    assert not home.tenants_dir.exists()  # refused before anything was written


def test_an_empty_configured_pepper_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="key_pepper is empty"):
        load_settings(home=tmp_path, key_pepper="  ")
