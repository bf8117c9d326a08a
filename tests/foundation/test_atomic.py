"""Atomic writes survive a writer killed at any point."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from codetailor.atomic import atomic_write_json, read_json, remove_stale_partials, staging_dir


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2})
    assert read_json(target) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_staging_dir_failure_leaves_nothing(tmp_path):
    final = tmp_path / "v0001"
    with pytest.raises(RuntimeError):
        with staging_dir(final) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


WRITER = textwrap.dedent("""
    import sys
    from codetailor.atomic import atomic_write_json
    path = sys.argv[1]
    big = "x" * 200_000
    i = 0
    while True:
        i += 1
        atomic_write_json(path, {"i": i, "payload": big})
""")


def test_killed_writer_leaves_previous_state_readable(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"i": 0, "payload": ""})
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
        time.sleep(0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = read_json(target)  # never a torn file
        assert isinstance(data["i"], int)
        assert data["payload"] in ("", "x" * 200_000)
    remove_stale_partials(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_killed_staging_writer_publishes_nothing(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from codetailor.atomic import staging_dir
        with staging_dir(Path(sys.argv[1])) as tmp:
            (tmp / "weights").write_bytes(b"0" * 1000)
            print("staged", flush=True)
            time.sleep(60)
    """)
    final = tmp_path / "v0002"
    proc = subprocess.Popen([sys.executable, "-c", script, str(final)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not final.exists()
    assert remove_stale_partials(tmp_path) == 1
