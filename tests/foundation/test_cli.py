"""The console command: --help everywhere, --json, one-line errors with exit != 0."""

import json
import os
import subprocess
import sys

import pytest

from codetailor.cli import build_parser


def run(args, home, **env):
    e = {**os.environ, "CODETAILOR_HOME": str(home), **env}
    e.pop("CODETAILOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "codetailor.cli", *args], capture_output=True, text=True, env=e)


def _all_subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _all_subcommands(sub, prefix + (name,))


def test_every_subcommand_has_help(tmp_path):
    commands = list(_all_subcommands(build_parser()))
    assert ("tenant", "create") in commands and ("model", "fetch") in commands
    for cmd in commands:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([*cmd, "--help"])
        assert e.value.code == 0


def test_every_command_has_a_handler_and_json_but_serve():
    """`serve` runs until stopped, so it has no result to print; every other command can print its as JSON."""
    parser = build_parser()
    for cmd in _all_subcommands(parser):
        leaf = parser
        for name in cmd:
            leaf = next(a for a in leaf._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
        if any(a.__class__.__name__ == "_SubParsersAction" for a in leaf._actions):
            continue
        assert callable(leaf.get_default("handler")), cmd
        assert any("--json" in a.option_strings for a in leaf._actions) == (cmd != ("serve",)), cmd


def test_a_command_module_that_does_not_import_fails_loudly(monkeypatch):
    """A missing or broken command module is an error, never a command silently left out."""
    import codetailor.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "codetailor.cli.no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()


def test_tenant_and_key_lifecycle(tmp_path):
    home = tmp_path / "home"
    r = run(["tenant", "create", "acme", "--json"], home)
    assert r.returncode == 0, r.stderr
    admin = json.loads(r.stdout)["admin_api_key"]
    assert admin.startswith("ct_")
    r = run(["key", "create", "--tenant", "acme", "--role", "developer", "--json"], home)
    dev = json.loads(r.stdout)["api_key"]
    rows = json.loads(run(["key", "list", "--tenant", "acme", "--json"], home).stdout)
    assert {row["role"] for row in rows} == {"admin", "developer"}
    assert all(admin not in json.dumps(row) and dev not in json.dumps(row) for row in rows)
    assert run(["key", "revoke", dev.split("_")[1]], home).returncode == 0
    assert [row["revoked"] for row in json.loads(run(["key", "list", "--json"], home).stdout)].count(True) == 1
    assert json.loads(run(["tenant", "list", "--json"], home).stdout)[0]["name"] == "acme"
    assert run(["tenant", "delete", "acme"], home).returncode == 0
    assert json.loads(run(["tenant", "list", "--json"], home).stdout) == []


@pytest.mark.parametrize("args,needle", [
    (["tenant", "create", "../evil"], "invalid tenant name"),
    (["tenant", "delete", "ghost"], "unknown tenant"),
    (["key", "create", "--tenant", "ghost"], "unknown tenant"),
    (["key", "revoke", "nope"], "unknown key id"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, needle):
    r = run(args, tmp_path / "home")
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_config_is_a_clear_error(tmp_path):
    r = run(["tenant", "list"], tmp_path / "home", CODETAILOR_SERVING__PORT="x")
    assert r.returncode != 0 and "serving.port" in r.stderr and "Traceback" not in r.stderr


def test_duplicate_tenant_exit_code(tmp_path):
    home = tmp_path / "home"
    assert run(["tenant", "create", "acme"], home).returncode == 0
    r = run(["tenant", "create", "acme"], home)
    assert r.returncode == 4 and "already exists" in r.stderr
