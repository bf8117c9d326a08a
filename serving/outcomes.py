"""Completion outcomes per tenant, stored under TenantPaths.usage_dir.

One JSON line per report appended to `outcomes.jsonl` with a single O_APPEND
write (lines stay far below PIPE_BUF, so concurrent writers never interleave
and a crash leaves at most one torn last line, which `summary` skips).
"""

from __future__ import annotations

import json
import os
import time

from codetailor.home import TenantPaths

OUTCOMES = ("accepted", "rejected", "edited")


class OutcomeStore:
    def __init__(self, paths: TenantPaths):
        self.paths = paths
        self.file = paths.usage_dir / "outcomes.jsonl"

    def record(self, completion_id: str, outcome: str, kept_chars: int, *, system: str, adapter_version: str) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        line = json.dumps({"ts": round(time.time(), 3), "id": completion_id, "outcome": outcome,
                           "kept_chars": kept_chars, "system": system, "adapter_version": adapter_version},
                          separators=(",", ":")) + "\n"
        self.paths.usage_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def summary(self) -> dict:
        counts = dict.fromkeys(OUTCOMES, 0)
        chars = 0
        try:
            with open(self.file, encoding="utf-8") as f:
                for raw in f:
                    try:
                        r = json.loads(raw)
                    except ValueError:  # a torn last line after a crash
                        continue
                    if r.get("outcome") in counts:
                        counts[r["outcome"]] += 1
                        chars += int(r.get("kept_chars", 0))
        except FileNotFoundError:
            pass
        total = sum(counts.values())
        rate = (counts["accepted"] + counts["edited"]) / total if total else 0.0
        return {"tenant": str(self.paths.tenant), **counts, "accepted_chars": chars, "acceptance_rate": rate}
