"""What the bench scripts share around a measurement: plain options typed by their defaults, and
the result printed and saved as JSON. (What a result records about the machine: bench/machine.py.)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_options(ap: argparse.ArgumentParser, **defaults: int | float | str) -> None:
    """One `--name` option per keyword, of its default's type: `capacity_s=60.0` is `--capacity-s`, a float."""
    for name, default in defaults.items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)


def publish(result: dict, out: str | Path | None) -> None:
    """Print the result as indented JSON and, given a path, write it there as well."""
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
