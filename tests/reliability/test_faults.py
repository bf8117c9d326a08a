"""Faults survived: a corrupt adapter, the vector service down, kill -9 during
indexing and during training. Secrets never reach an index, a training
example, a prompt or a completion. (A model replica killed under load, and
overload at twice capacity, run in bench/reliability.py: they take minutes.)"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from serving.client import ClientError
from tests.reliability.world import write_repo

pytestmark = [pytest.mark.integration, pytest.mark.engine, pytest.mark.model]
ROOT = Path(__file__).resolve().parents[2]
OK = dict(prefix="def load_config(path, *, strict=False):\n    value = ", path="common.py", max_tokens=1)


def metric_lines(stack, name: str, must: str, seconds: float = 40) -> list[str]:
    """Lines of series `name` containing `must` on Ray's metrics port (exported every few seconds)."""
    deadline = time.time() + seconds
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
        lines = [l for l in text.splitlines() if l.startswith(name) and must in l]
        if lines or time.time() > deadline:
            return lines
        time.sleep(2)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def new_tenant(stack, name: str):
    from codetailor.home import Home
    from codetailor.tenants import Registry

    registry = Registry(Home(stack.home), "test-pepper")
    paths, admin = registry.create_tenant(name)
    return registry, paths, registry.create_key(name, "developer")


def test_corrupt_adapter_is_served_by_base_with_a_metric(serving_stack, world):
    from codetailor.adapters import AdapterStore
    from tests.fixtures.serving import make_adapter

    registry, paths, key = new_tenant(serving_stack, "corrupt1")
    version = make_adapter(paths, serving_stack.base_model, seed=5)
    AdapterStore(paths).set_active(version)
    weights = AdapterStore(paths).path(version) / "adapter_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"\x00garbage" * 100)
    from serving.client import CompletionClient

    with CompletionClient("127.0.0.1", serving_stack.port, key) as c:
        r = c.complete(**OK)
        assert r["system"] == "base" and r["adapter_version"] == "", r
    with serving_stack.client("beta") as other:  # other tenants untouched
        r = other.complete(**OK)
        assert r["system"] == "ft" and r["adapter_version"] == serving_stack.versions["beta"][0]
    assert metric_lines(serving_stack, "ray_codetailor_adapter_load_failures_total", 'tenant="corrupt1"')
    # fixed file: the adapter takes over again (failed loads are retried after 30 s)
    weights.write_bytes(good)
    deadline, system = time.time() + 60, None
    with CompletionClient("127.0.0.1", serving_stack.port, key) as c:
        while time.time() < deadline and system != "ft":
            time.sleep(3)
            system = c.complete(**OK)["system"]
    assert system == "ft"


def test_vector_service_down_degrades_to_bm25(serving_stack, world):
    from serving.ingress import Ingress

    with socket.socket() as s:  # a port nothing listens on: a real connection failure
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    st = serving_stack.settings
    settings = st.model_copy(update={"retrieval": st.retrieval.model_copy(update={
        "vector_store": "service", "qdrant_url": f"http://127.0.0.1:{closed}", "qdrant_collection": "down"})})
    ingress = Ingress(settings, serving_stack.stack.model, str(serving_stack.base_model))
    tenant = "iso07"
    req = dict(OK, suffix="", request_id="vec-down", tenant=tenant, language=None, temperature=0.0, stop=[],
               deadline=None)
    out = serving_stack.call(ingress.complete(req))
    assert "error" not in out, out
    assert out["system"] == "ft+rag" and out["snippets"], out   # BM25 still placed the tenant's snippets
    assert all((s["path"], s["start_line"], s["end_line"]) in world[tenant].locations for s in out["snippets"])
    assert out["completion_tokens"] == 1
    assert metric_lines(serving_stack, "ray_codetailor_retrieval_degraded_total", 'reason="vector_store_down"')


def _child(code: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_line(proc: subprocess.Popen, marker: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        line = proc.stdout.readline()
        if marker in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited ({proc.returncode}) before {marker!r}")
    raise AssertionError(f"no {marker!r} within {seconds} s")


SETTINGS_CODE = """
    from codetailor.config import load_settings
    from codetailor.home import Home
    settings = load_settings(home={home!r}, key_pepper="test-pepper", model={{"base": {base!r}}})
    paths = Home(settings.home).tenant({tenant!r})
"""


def test_kill_during_indexing_keeps_the_previous_index(serving_stack, tmp_path):
    import retrieval
    from retrieval.segments import manifest_path
    from retrieval.vectors import close_edge_shards

    registry, paths, _ = new_tenant(serving_stack, "killidx")
    repo = tmp_path / "repo"
    write_repo(repo, "killidx", 3, "CANARY_KILLIDX")
    registry.add_source(paths.tenant, "main", str(repo))
    retrieval.index_source(serving_stack.settings, paths, repo)
    close_edge_shards()
    before_manifest = manifest_path(paths).read_bytes()
    query = "def load_config(path, *, strict=False):"
    before_hits = {mode: retrieval.search(serving_stack.settings, paths, query, mode=mode, top_k=5)
                   for mode in ("bm25", "semantic", "hybrid")}
    close_edge_shards()
    # the vector shard is shared by generations (reads filter on the published one), so it
    # may change; the symbol table is its own record, committed at the end of the chunk pass
    # (before the publish); the manifest and the segments it names must not change
    before_index = {k: v for k, v in tree_digest(paths.index_dir).items()
                    if not k.startswith(("vectors/", "symbols.sqlite"))}
    # a much bigger change: hundreds of new files to chunk and embed
    for i in range(600):
        (repo / f"gen_{i:03d}.py").write_text("".join(f"def f_{i}_{j}(x):\n    return x * {j} + {i}\n\n" for j in range(12)))
    proc = _child(SETTINGS_CODE.format(home=str(serving_stack.home), base=str(serving_stack.base_model),
                                       tenant="killidx") + f"""
    import time
    import retrieval
    import retrieval.ingest as ingest
    def publishing(*a, **k):  # the run has written its segments; the kill lands before the publish
        print("PUBLISHING", flush=True)
        time.sleep(600)
    ingest.publish_manifest = publishing
    retrieval.index_source(settings, paths, {str(repo)!r})
    print("DONE", flush=True)
    """)
    try:
        # (a kill after the publish leaves the new generation searchable by BM25 while its vectors
        # fill in: tests/retrieval/test_searchable_first.py)
        _wait_for_line(proc, "PUBLISHING")
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert manifest_path(paths).read_bytes() == before_manifest
    after = tree_digest(paths.index_dir)
    assert {k: v for k, v in after.items() if k in before_index} == before_index  # nothing published touched
    for mode, before in before_hits.items():  # vectors the killed run wrote are not visible
        hits = retrieval.search(serving_stack.settings, paths, query, mode=mode, top_k=5)
        assert [(h.path, h.start_line, h.text) for h in hits] == [(h.path, h.start_line, h.text) for h in before], mode
        assert not any(h.path.startswith("gen_") for h in hits)
    close_edge_shards()
    # and the next run completes despite the leftovers (lock, partial segments)
    for i in range(600):
        (repo / f"gen_{i:03d}.py").unlink()
    (repo / "extra.py").write_text("def extra_function():\n    return 42\n")
    summary = retrieval.index_source(serving_stack.settings, paths, repo)
    close_edge_shards()
    assert summary
    assert any(h.path == "extra.py" for h in retrieval.search(serving_stack.settings, paths, "extra_function",
                                                               mode="bm25", top_k=3))


def test_kill_during_training_keeps_the_active_adapter(serving_stack, tmp_path):
    import retrieval
    from codetailor.adapters import AdapterStore
    from retrieval.vectors import close_edge_shards
    from tests.fixtures.serving import make_adapter

    registry, paths, key = new_tenant(serving_stack, "killtrain")
    repo = tmp_path / "repo"
    write_repo(repo, "killtrain", 4, "CANARY_KILLTRAIN")
    for i in range(6):
        (repo / f"mod_{i}.py").write_text("".join(f"def g_{i}_{j}(x):\n    return x + {j}\n\n" for j in range(30)))
    registry.add_source(paths.tenant, "main", str(repo))
    retrieval.index_source(serving_stack.settings, paths, repo)
    close_edge_shards()
    store = AdapterStore(paths)
    active = make_adapter(paths, serving_stack.base_model, seed=21)
    store.set_active(active)
    before_state, before_files = store.state(), tree_digest(store.path(active))
    proc = _child(SETTINGS_CODE.format(home=str(serving_stack.home), base=str(serving_stack.base_model),
                                       tenant="killtrain") + """
    from training.run import TrainOptions, train_tenant
    # short sequences, one per step, checkpoints every second: the kill lands inside the loop
    settings = settings.model_copy(update={"training": settings.training.model_copy(update={
        "checkpoint_seconds": 1.0, "seq_len": 64, "target_tokens": 16, "grad_accum": 1, "eval_examples": 2})})
    print("START", flush=True)
    train_tenant(settings, paths, TrainOptions(rank=2, alpha=4, epochs=50.0, time_budget=600, replay_ratio=0.0, progress=False))
    print("DONE", flush=True)
    """)
    try:
        _wait_for_line(proc, "START")
        work = paths.work_dir / "train"
        deadline = time.time() + 180  # until the loop runs (its first checkpoint appears), then a bit more
        while time.time() < deadline and not (work.is_dir() and any(work.glob("*.pt"))) and proc.poll() is None:
            time.sleep(0.5)
        if not (work.is_dir() and any(work.glob("*.pt"))):
            proc.kill()
            raise AssertionError(f"the training loop never checkpointed: {proc.stdout.read()[-3000:]}")
        time.sleep(2.5)
        assert proc.poll() is None, proc.stdout.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = AdapterStore(paths)
    assert after.active() == active
    assert after.versions() == [active]                       # no half-written version published
    assert tree_digest(after.path(active)) == before_files   # the active adapter's files intact
    assert after.state().model_copy(update={"updated_at": None}) == before_state.model_copy(update={"updated_at": None})
    from serving.client import CompletionClient

    with CompletionClient("127.0.0.1", serving_stack.port, key) as c:  # and it is what serves
        r = c.complete(**OK)
    assert r["adapter_version"] == active and r["system"] == "ft+rag"


SECRETS = {
    "aws": "AKIA" + "J7Q2ZK4MXW3PLR8N",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "Q9A7ZT3H5NLK",
    "github": "ghp_" + "R8d3Kq9ZtW2mVx7LbN4cYf6HjP1sAe5GuT0o",
    "slack": "xoxb-" + "2948571036-4820193746-Qm7TzR2kW9vLx3Nb8PcY",
    "private_key": "MIIEowIBAAKCAQEA7vX3q9Lb2Rk8ZtQ",
    "password": "hunter2-" + "Xy7Qp9Lm3Zr",
}


def write_secret_repo(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{SECRETS["aws"]}"\n'
                                      f'AWS_SECRET_ACCESS_KEY = "{SECRETS["aws_secret"]}"\n'
                                      "def load_config(path, *, strict=False):\n    return {}\n")
    (root / "deploy.py").write_text(f'GITHUB_TOKEN = "{SECRETS["github"]}"\nSLACK = "{SECRETS["slack"]}"\n'
                                    "def deploy_service(name):\n    return name\n")
    (root / "id_rsa.py").write_text('KEY = """-----BEGIN RSA PRIVATE KEY-----\n'
                                    f'{SECRETS["private_key"]}\n-----END RSA PRIVATE KEY-----"""\n')
    (root / "db.py").write_text(f'password = "{SECRETS["password"]}"\ndef connect_db(host):\n    return host\n')
    for i in range(4):  # clean code, so the tenant has something to index and train on
        (root / f"clean_{i}.py").write_text("".join(
            f"def load_config_{i}_{j}(path, *, strict=False):\n    return path.strip() + '{j}'\n\n" for j in range(8)))


def test_planted_secrets_never_leave_the_repo(serving_stack, tmp_path, local_ingress):
    import retrieval
    from transformers import AutoTokenizer

    from retrieval.vectors import close_edge_shards
    from training.corpus import tenant_files
    from training.examples import ExampleBuilder
    from training.run import build_examples

    registry, paths, key = new_tenant(serving_stack, "secrets1")
    repo = tmp_path / "repo"
    write_secret_repo(repo)
    registry.add_source(paths.tenant, "main", str(repo))
    st = serving_stack.settings
    retrieval.index_source(st, paths, repo)
    close_edge_shards()

    def no_secret(blob: str | bytes, where: str) -> None:
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        for name, s in SECRETS.items():
            assert s not in text, f"{name} secret in {where}"

    for p in paths.index_dir.rglob("*"):                                  # the index, every file
        if p.is_file():
            no_secret(p.read_bytes(), str(p.relative_to(paths.index_dir)))
    files = tenant_files(st, paths)                   # training corpus
    assert files and all(f.path.startswith("clean_") for f in files), [f.path for f in files]
    tok = AutoTokenizer.from_pretrained(serving_stack.base_model)
    builder = ExampleBuilder(tok, st.prompt, st.training.seq_len, st.training.target_tokens, None,
                             st.retrieval.query_lines)
    examples = build_examples(builder, files, "tenant", 1)
    assert examples
    for ex in examples:                                                   # training examples
        no_secret(tok.decode(list(ex.ids)), f"example of {ex.path}")
    for prefix in ("AWS_ACCESS_KEY_ID = ", "GITHUB_TOKEN = ", "password = ", "KEY = \"\"\"-----BEGIN RSA"):
        req = dict(prefix=prefix, suffix="", path="settings.py", max_tokens=24, request_id="sec-check",
                   tenant="secrets1", language=None, temperature=0.0, stop=[], deadline=None)
        prep = local_ingress._prepare(req)                                # prompts
        no_secret(prep.model_req["prompt"], f"prompt for {prefix!r}")
        from serving.client import CompletionClient

        with CompletionClient("127.0.0.1", serving_stack.port, key) as c:  # completions
            no_secret(c.complete(prefix=prefix, path="settings.py", max_tokens=24)["text"], "completion")
