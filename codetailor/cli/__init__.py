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
from pathlib import Path
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


def add_command(commands, name: str, help: str, handler, *, tenant: bool = False) -> argparse.ArgumentParser:
    """A command with what they all have, `--json` and its handler, and `--tenant` (required) when
    `tenant`; the caller adds the command's own arguments to the parser returned."""
    p = commands.add_parser(name, help=help)
    if tenant:
        p.add_argument("--tenant", required=True)
    add_json_flag(p)
    p.set_defaults(handler=handler)
    return p


def add_group(commands, name: str, help: str):
    """A command made of actions (`codetailor NAME ACTION ...`): the subparsers to add them to."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_cursor_flags(p: argparse.ArgumentParser, path_default: str) -> None:
    """Where the completion goes: --prefix [--suffix], or --file with --line [--column]."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prefix", help="the code before the cursor (ending in a newline: a line start)")
    src.add_argument("--file", type=Path, help="a source file; the cursor is at --line (and --column)")
    p.add_argument("--line", type=int, help="1-based cursor line for --file")
    p.add_argument("--column", type=int, help="0-based cursor column for --file (default: the line start)")
    p.add_argument("--suffix", default="", help="the code after the cursor (with --prefix)")
    p.add_argument("--path", help=f"path shown to the model (default: the file's name, or {path_default})")
    p.add_argument("--cursor-kind", choices=["auto", "line_start", "mid_line"], default="auto",
                   help="with --prefix: where the cursor sits in its line (default auto: a prefix ending in a "
                        "newline is a line start); --file knows from --column")


def read_cursor(args, path_default: str):
    """The codetailor.completion.Cursor that `add_cursor_flags`' arguments describe."""
    from codetailor.completion import Cursor
    from codetailor.errors import NotFound

    kind = None if args.cursor_kind == "auto" else args.cursor_kind
    if args.prefix is not None:
        if args.line is not None or args.column is not None:
            raise CodetailorError("--line/--column go with --file, not --prefix")
        try:
            return Cursor(args.prefix, args.suffix, args.path or path_default, kind)
        except ValueError as e:
            raise CodetailorError(f"--cursor-kind: {e}") from None
    if args.line is None:
        raise CodetailorError("--file needs --line")
    if kind is not None or args.suffix:
        raise CodetailorError("--cursor-kind and --suffix go with --prefix; --file's cursor is --line/--column")
    try:
        source = args.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"no such file: {args.file}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CodetailorError(f"cannot read {args.file}: {e}") from None
    try:
        return Cursor.in_file(source, args.line, args.column, args.path or args.file.name)
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
