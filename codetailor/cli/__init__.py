"""The `codetailor` console command.

Each command group is a module here with `register(subparsers)`; a command's
handler takes the parsed args and returns a dict (printed as JSON with --json)
or None. Expected failures raise CodetailorError: one line on stderr, exit != 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import threading
from typing import Any

from codetailor.errors import INTERRUPTED_EXIT, CodetailorError, outcome

# Command groups, in the order --help lists them. Each module registers its own subcommands.
COMMAND_MODULES = [
    "codetailor.cli.model",
    "codetailor.cli.tenants",
    "codetailor.cli.index",
    "codetailor.cli.status",
    "codetailor.cli.sources",
    "codetailor.cli.refresh",
    "codetailor.cli.train",
    "codetailor.cli.evaluate",
    "codetailor.cli.generate",
    "codetailor.cli.serve",
    "codetailor.cli.doctor",
]


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON result")


def read_cursor(file, line: int | None, column: int | None) -> tuple[str, str]:
    """(prefix, suffix) of a file split at an editor cursor, for `--file F --line N [--column C]`."""
    from codetailor.errors import NotFound
    from codetailor.prompt_format import cursor_parts

    if line is None:
        raise CodetailorError("--file needs --line")
    try:
        source = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no such file: {file}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CodetailorError(f"cannot read {file}: {e}") from None
    try:
        return cursor_parts(source, line, column)
    except ValueError as e:
        raise CodetailorError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codetailor",
        description="Tailor a code-completion model to your organisation's repositories.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def emit(result: Any, as_json: bool) -> None:
    if result is None:
        return
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif isinstance(result, str):
        print(result)
    elif isinstance(result, dict):
        for k, v in result.items():
            print(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    else:
        print(result)


@contextlib.contextmanager
def _process_policy():
    """What every command runs under; restored afterwards (tests call `main` in-process).
    - umask 077: files the libraries write under the home (PEFT's safetensors, bm25s' and
      Qdrant's files) are a tenant's code or derived from it, owner-only like our own.
    - SIGTERM (a supervisor, `kill`, a container stop) ends a command as Ctrl-C does: its
      `finally` blocks run, so a command that started an engine shuts it down instead of
      the default SIGTERM exit leaving it behind. (`serve` installs its own handlers.)"""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old_umask = os.umask(0o077)
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, interrupt) if in_main else None
    try:
        yield
    finally:
        os.umask(old_umask)
        if in_main:
            signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    # Before any command imports torch: the OpenMP runtime reads these once, when it loads.
    from codetailor.hardware import apply_openmp_env

    apply_openmp_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _process_policy():
            result = args.handler(args)
            emit(result, getattr(args, "json", False))
        return 0
    except CodetailorError as e:
        print(f"codetailor: error: {e}", file=sys.stderr)
        return outcome(e).exit_code
    except KeyboardInterrupt:
        print("codetailor: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
