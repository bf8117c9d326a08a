"""`codetailor doctor`: the chosen dtypes and threads, each with a reason; the OpenMP
environment is in place before torch loads."""

import json
import os
import subprocess
import sys
import textwrap


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "CODETAILOR_CONFIG")}
    return {**env, "CODETAILOR_HOME": str(home), **extra}


def test_doctor_reports_resolved_choices(tmp_home, monkeypatch, capsys):
    from codetailor.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["doctor", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for name in ("engine", "base_weights", "autocast"):
        assert out["dtypes"][name]["value"] in ("bfloat16", "float32") and out["dtypes"][name]["reason"]
    assert out["threads"]["training"]["reason"] and out["cpu"]["cores"] >= 1
    assert out["openmp"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert any(x.startswith(("libgomp", "libiomp", "libomp")) for x in out["openmp"]["runtimes"])
    assert out["versions"]["torch"] and out["memory"]["total_gib"] > 0
    assert "not fetched" in out["kv_cache"]["reason"]      # an empty home has no model to size for
    assert main(["doctor"]) == 0
    assert "dtype        engine" in capsys.readouterr().out


def test_doctor_honours_explicit_dtypes(tmp_home, monkeypatch):
    from codetailor.cli.doctor import report
    from codetailor.config import load_settings

    monkeypatch.setenv("CODETAILOR_ENGINE__DTYPE", "float32")
    monkeypatch.setenv("CODETAILOR_TRAINING__AUTOCAST", "float32")
    out = report(load_settings())
    assert out["dtypes"]["engine"] == {"value": "float32", "reason": "set explicitly in the configuration"}
    assert out["dtypes"]["autocast"]["value"] == "float32"


def test_cli_sets_openmp_env_before_torch_loads(tmp_path):
    # An import hook reports the environment at the moment torch is first imported.
    probe = textwrap.dedent("""
        import os, sys
        class Probe:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    print("torch sees", os.environ.get("OMP_WAIT_POLICY"), os.environ.get("KMP_BLOCKTIME"), flush=True)
                    sys.meta_path.remove(self)
                return None
        sys.meta_path.insert(0, Probe())
        from codetailor.cli import main
        main(["doctor", "--json"])
    """)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_env(tmp_path / "home"))
    assert r.stdout.splitlines()[0] == "torch sees PASSIVE 0", r.stdout[:300] + r.stderr[-2000:]
