"""The end-to-end demo behind `make demo`, on the embedded defaults.

Each step is the real `codetailor` command a user would type, run in order
against a demo home (.demo/home unless CODETAILOR_HOME is set):

  model fetch -> tenant create -> index a real public project -> search ->
  train a short adapter -> evaluate and activate what the guardrail allows ->
  serve, complete (unary and streamed) through gRPC -> stop.

The project is a real public package fetched at demo time from PyPI (a pure-
Python wheel holds its source), or a path given with --repo.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

DEMO_PACKAGE = "tomlkit==0.13.2"
TENANT = "demo"
ROOT = Path(__file__).resolve().parents[1]


def _say(msg: str) -> None:
    print(f"\n\033[1m== {msg}\033[0m", flush=True)


def _cli(*args: str, env: dict, capture_json: bool = False, check: bool = True):
    cmd = [sys.executable, "-m", "codetailor.cli", *args]
    shown = (a if len(a) <= 60 else a[:40] + f"...<{len(a)} chars>" for a in args)
    print("$ codetailor " + " ".join(shlex.quote(a) for a in shown), flush=True)
    if capture_json:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0 and check:
            sys.stderr.write(r.stderr)
            raise SystemExit(f"demo: step failed: codetailor {' '.join(args)}")
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0 and check:
        raise SystemExit(f"demo: step failed: codetailor {' '.join(args)}")
    return r.returncode


def fetch_demo_repo(dest: Path) -> Path:
    """Unpack the source of a real public package (its pure-Python wheel) into dest."""
    target = dest / "tomlkit"
    if target.is_dir():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "-d", tmp, DEMO_PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith("tomlkit/")]
            z.extractall(dest, members)
    return target


def _wait_until_serving(host: str, port: int, server: subprocess.Popen, timeout: float) -> None:
    """Poll the standard gRPC health service until it answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"demo: the server exited with code {server.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(2)
    raise SystemExit(f"demo: the server did not become ready within {timeout:.0f} s")


def _demo_cursor(repo: Path) -> tuple[Path, str]:
    """A cursor an editor would plausibly complete at: the start of a `return` line inside a
    function of the repository's largest Python file."""
    for path in sorted(repo.rglob("*.py"), key=lambda p: -p.stat().st_size):
        for number, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if number > 20 and text.startswith("        return "):
                return path, str(number)
    path = max(repo.rglob("*.py"), key=lambda p: p.stat().st_size)
    return path, str(min(40, len(path.read_text().splitlines())))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="codetailor-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, help="index and train on this repository instead of the demo package")
    ap.add_argument("--train-budget", default="4m", help="fine-tuning time budget (default 4m)")
    ap.add_argument("--eval-n", type=int, default=40, help="evaluation tasks per system (default 40)")
    ap.add_argument("--port", type=int, default=50061)
    args = ap.parse_args(argv)

    demo_dir = ROOT / ".demo"
    env = dict(os.environ)
    env.setdefault("CODETAILOR_HOME", str(demo_dir / "home"))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    # A demo-sized optimizer step (2 sequences), so a few minutes on 2 cores take many steps.
    env.setdefault("CODETAILOR_TRAINING__GRAD_ACCUM", "2")
    # The demo package has few files: hold out more of them so evaluation has tasks.
    env.setdefault("CODETAILOR_TRAINING__HELDOUT_FRACTION", "0.3")
    t0 = time.perf_counter()

    _say("1. base model")
    print(json.dumps(_cli("model", "fetch", "--json", env=env, capture_json=True), indent=2))

    _say("2. demo tenant")
    tenants = _cli("tenant", "list", "--json", env=env, capture_json=True) or []
    if not any(t["name"] == TENANT for t in tenants):
        _cli("tenant", "create", TENANT, "--json", env=env, capture_json=True)
    key = _cli("key", "create", "--tenant", TENANT, "--role", "developer", "--json", env=env, capture_json=True)
    env["CODETAILOR_API_KEY"] = key["api_key"]

    repo = args.repo.resolve() if args.repo else fetch_demo_repo(demo_dir / "repos")
    _say(f"3. index {repo}")
    print(json.dumps(_cli("index", "--tenant", TENANT, str(repo), "--json", env=env, capture_json=True), indent=2))
    _cli("search", "--tenant", TENANT, "--query", "parse a table header", "--top-k", "2", env=env)

    _say(f"4. fine-tune a LoRA adapter ({args.train_budget} budget)")
    print(json.dumps(_cli("train", "--tenant", TENANT, "--time-budget", args.train_budget, "--json",
                          env=env, capture_json=True), indent=2))

    _say("5. evaluate against the generic model, activate what the guardrail allows")
    _cli("eval", "--tenant", TENANT, "--n", str(args.eval_n), env=env)
    latest = [r for r in _cli("adapters", "list", "--tenant", TENANT, "--json", env=env, capture_json=True)
              if r["latest"]][0]
    if _cli("adapters", "activate", "--tenant", TENANT, latest["version"], env=env, check=False) != 0:
        print("demo: the guardrail kept the generic model for this tenant (see the message above)")

    _say("6. serve and complete through gRPC")
    server = subprocess.Popen([sys.executable, "-m", "codetailor.cli", "serve", "--port", str(args.port)],
                              env=env, start_new_session=True)
    try:
        _wait_until_serving("127.0.0.1", args.port, server, timeout=300)
        # As an editor sends it while the developer writes that line: the code above the
        # cursor, which sits at the line's start, and the code below the line being written
        # (the line itself not yet there).
        target, line = _demo_cursor(repo)
        lines = target.read_text(encoding="utf-8").split("\n")
        n = int(line)
        print(f"cursor: {target.relative_to(repo)}:{n}, expected: {lines[n - 1].strip()!r}")
        for extra in ([], ["--stream"]):
            _cli("complete", "--port", str(args.port), "--path", str(target.relative_to(repo)),
                 "--prefix=" + "\n".join(lines[: n - 1]) + "\n", "--suffix=" + "\n".join(lines[n:]),
                 "--max-tokens", "24", *extra, env=env)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    _say(f"demo done in {time.perf_counter() - t0:.0f} s (home: {env['CODETAILOR_HOME']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
