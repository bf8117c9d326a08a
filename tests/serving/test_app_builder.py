"""The Serve application builder (the Helm chart's `import_path`) and `codetailor serve --attach`.

Fast tests build the application the way Ray Serve does for a config (`import_path` + `args`)
without deploying it; one integration test runs `serve --attach` against the session stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from codetailor.errors import ConfigError, NotFound

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    """Writes CODETAILOR_CONFIG (as the chart's ConfigMap does) with a stand-in checkpoint dir:
    building the graph only checks the model directory; nothing is loaded."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for var in [v for v in os.environ if v.startswith("CODETAILOR_")]:
        monkeypatch.delenv(var)

    def write(**sections) -> Path:
        cfg = {"home": str(tmp_path / "home"), "model": {"base": str(model)}, **sections}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        monkeypatch.setenv("CODETAILOR_CONFIG", str(path))
        return model

    return write


def built(args: dict) -> dict:
    """Deployments by name, built as Serve builds a config's application (no cluster needed)."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app as serve_build

    from serving.app import app_builder

    app = call_user_app_builder_with_args_if_necessary(app_builder, args)
    b = serve_build(app, name="codetailor")
    assert b.ingress_deployment_name == "Ingress"
    return {d.name: d for d in b.deployments}


def test_builder_reads_settings_from_codetailor_config(config_file):
    model = config_file(serving={"replicas": 3, "max_ongoing_requests": 7, "max_queued_requests": 9},
                        engine={"max_num_seqs": 5})
    deps = built({})
    assert set(deps) == {"Ingress", "Model"}
    m, i = deps["Model"], deps["Ingress"]
    # The local defaults: fixed replicas, engine batch = model concurrency, no CPU reservation.
    assert (m.num_replicas, m.max_ongoing_requests, m.max_queued_requests) == (3, 5, 9)
    assert (i.num_replicas, i.max_ongoing_requests, i.max_queued_requests) == (1, 7, 9)
    assert m.ray_actor_options == {"num_cpus": 0} and i.ray_actor_options == {"num_cpus": 0}
    assert m._deployment_config.autoscaling_config is None
    settings, model_path = m.init_args
    assert model_path == str(model.resolve()) and settings.serving.replicas == 3
    assert i.init_args[0].engine.max_num_seqs == 5


def test_args_set_replicas_autoscaling_limits_and_resources(config_file):
    config_file()
    deps = built({"model": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 32,
                            "max_ongoing_requests": 48, "num_gpus": 1, "num_cpus": 2},
                  "ingress": {"replicas": 2, "max_queued_requests": -1, "num_cpus": 1}})
    m, i = deps["Model"], deps["Ingress"]
    auto = m._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (1, 4, 32)
    assert m.max_ongoing_requests == 48 and m.ray_actor_options == {"num_cpus": 2, "num_gpus": 1}
    assert i.num_replicas == 2 and i.max_queued_requests == -1 and i.ray_actor_options == {"num_cpus": 1}
    assert i._deployment_config.autoscaling_config is None


def test_flat_string_args_as_serve_run_passes_them(config_file):
    config_file()
    deps = built({"model_replicas": "2", "ingress_max_replicas": "3", "ingress_max_ongoing_requests": "10"})
    assert deps["Model"].num_replicas == 2
    auto = deps["Ingress"]._deployment_config.autoscaling_config
    assert (auto.min_replicas, auto.max_replicas) == (1, 3) and deps["Ingress"].max_ongoing_requests == 10


@pytest.mark.parametrize("args, message", [
    ({"replicas": 2}, "unknown app builder argument 'replicas'"),
    ({"model_colour": 1}, "model.colour"),
    ({"model_replicas": 0}, "model.replicas"),
    ({"model_replicas": "two"}, "model.replicas"),
    ({"model_replicas": 2, "model_max_replicas": 3}, "not both"),
    ({"ingress_min_replicas": 2}, "autoscaling needs max_replicas"),
    ({"ingress_min_replicas": 4, "ingress_max_replicas": 3}, "min_replicas is above max_replicas"),
])
def test_bad_args_are_one_line_config_errors(config_file, args, message):
    from serving.app import app_builder

    config_file()
    with pytest.raises(ConfigError, match=message) as e:
        app_builder(args)
    assert "\n" not in str(e.value)


def test_missing_model_and_bad_config_are_clear_errors(config_file, tmp_path, monkeypatch):
    from serving.app import app_builder

    config_file(model={"base": str(tmp_path / "nowhere")})
    with pytest.raises(NotFound, match="checkpoint directory"):
        app_builder({})
    config_file(serving={"replicas": 0})
    with pytest.raises(ConfigError, match="serving.replicas"):
        app_builder({})


@pytest.mark.parametrize("values", ["defaults", "ci"])
def test_chart_serve_config_applies_to_the_built_app(config_file, values):
    """What KubeRay hands Serve: the chart's serveConfigV2 (import_path, args, deployments) applied onto
    the builder's graph with Serve's own override logic, so a name or option the app cannot take fails here."""
    pytest.importorskip("helm_python")
    from ray.serve._private.application_state import override_deployment_info
    from ray.serve._private.deploy_utils import deploy_args_to_deployment_info
    from ray.serve.schema import ServeDeploySchema

    from tests.ops import chart

    config_file()
    chart_values = chart.ci_values() if values == "ci" else None
    doc = chart.by_kind(chart.render(chart_values), "RayService")[0]
    app_cfg = ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"])).applications[0]
    module, _, attr = app_cfg.import_path.partition(":")
    assert (module, attr) == ("serving.app", "app_builder")
    deps = built(app_cfg.args)
    infos = {}
    for name, d in deps.items():
        d._deployment_config.version = "test"
        infos[name] = deploy_args_to_deployment_info(
            deployment_name=name, deployment_config_proto_bytes=d._deployment_config.to_proto_bytes(),
            replica_config_proto_bytes=d._replica_config.to_proto_bytes(), deployer_job_id="01000000",
            app_name=app_cfg.name, ingress=name == "Ingress")
    final = override_deployment_info(infos, app_cfg)
    wanted = {d["name"]: d for d in yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"][0]["deployments"]}
    for name, info in final.items():
        auto = info.deployment_config.autoscaling_config
        want = wanted[name]["autoscaling_config"]
        assert (auto.min_replicas, auto.max_replicas) == (want["min_replicas"], want["max_replicas"])
        assert info.replica_config.ray_actor_options == {k: float(v) for k, v in wanted[name]["ray_actor_options"].items()}
    model = final["Model"].deployment_config
    assert model.max_ongoing_requests == wanted["Model"]["max_ongoing_requests"]
    assert model.max_queued_requests == wanted["Model"]["max_queued_requests"]


def test_local_default_graph_is_unchanged(config_file):
    """`codetailor serve`'s graph (start_stack calls build_app without args) keeps its options."""
    from codetailor.config import load_settings
    from serving.app import build_app

    model = config_file()
    app = build_app(load_settings(), model)
    m = app._bound_deployment.init_args[1]._bound_deployment  # Ingress(settings, Model(...), path)
    assert m.name == "Model" and m.num_replicas == 1
    cfg = m._deployment_config
    assert (cfg.health_check_period_s, cfg.health_check_timeout_s, cfg.graceful_shutdown_timeout_s) == (10, 30, 5)


# -- `codetailor serve --attach` --------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["serve", "--ray-address", "10.0.0.1:6379"], "--ray-address needs --attach"),
    (["serve", "--attach", "--replicas", "2"], "--replicas does not apply with --attach"),
])
def test_serve_flag_mistakes_are_one_line_errors(argv, message, capsys, tmp_home):
    from codetailor.cli import main

    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.integration
@pytest.mark.engine
@pytest.mark.model
def test_attach_serves_the_running_app_and_leaves_it_running(serving_stack):
    """A second front server joins the session's cluster (as the chart's gateway sidecar joins its
    pod's Ray node), answers through the same deployments, and stops on SIGINT without stopping them."""
    import ray

    from serving.client import CompletionClient
    from tests.fixtures.serving import free_port

    s = serving_stack
    port = free_port()
    env = dict(os.environ, CODETAILOR_HOME=str(s.home), CODETAILOR_KEY_PEPPER="test-pepper",
               CODETAILOR_SERVING__MAX_TOKENS_LIMIT="256", PYTHONPATH=str(ROOT))
    env.pop("CODETAILOR_CONFIG", None)  # RAY_AUTH_* come from start_stack's environment
    proc = subprocess.Popen([sys.executable, "-m", "codetailor.cli", "serve", "--attach", "--port", str(port),
                             "--ray-address", ray.get_runtime_context().gcs_address, "--wait", "60"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line, line + proc.stderr.read() if proc.poll() is not None else line
        with CompletionClient("127.0.0.1", port, s.keys["beta:developer"]) as c:
            via_attach = c.complete(prefix="def add(a, b):\n    return", path="m.py", max_tokens=6)
        with s.client("beta") as c:
            via_local = c.complete(prefix="def add(a, b):\n    return", path="m.py", max_tokens=6)
        assert via_attach["text"] == via_local["text"] and via_attach["system"] == "ft"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0, proc.stderr.read()
    with s.client("gamma") as c:  # the app still serves after the attached server left
        assert c.complete(prefix="x = 1\ny =", path="m.py", max_tokens=2)["system"] == "base"
