"""The Helm chart, checked without a cluster: lint, render (defaults and the CI values), validate every
object, and unit checks on what a cluster would get."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.ops import chart
from tests.ops.promql import RULES_FILE

BUILTIN_API_PREFIXES = ("v1", "apps/", "policy/", "networking.k8s.io/", "batch/")


@pytest.fixture(scope="module")
def default_docs():
    return chart.render()


@pytest.fixture(scope="module")
def ci_docs():
    return chart.render(chart.ci_values())


@pytest.fixture(params=["default", "ci"])
def docs(request, default_docs, ci_docs):
    return default_docs if request.param == "default" else ci_docs


# -- lint and validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [None, "ci"])
def test_lint_is_clean(values):
    import helm_python

    vals = chart.ci_values() if values == "ci" else None
    report = helm_python.lint(str(chart.chart_dir()), vals, strict=True, kube_version=f"v{chart.KUBE_VERSION}")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


def test_every_object_validates(docs):
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] in ("RayService", "RayJob"):
            chart.validate_crd(doc)
        elif doc["apiVersion"].startswith(BUILTIN_API_PREFIXES):
            chart.validate_builtin(doc)
        else:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", f"unvalidated kind {doc['kind']}"
    assert {"RayService", "StatefulSet", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim",
            "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_ci_values_render_the_optional_objects(ci_docs):
    kinds = {d["kind"] for d in ci_docs}
    assert {"RayJob", "ServiceMonitor", "PrometheusRule", "CronJob"} <= kinds


def test_validation_catches_a_broken_rayservice(default_docs):
    """The CRD check is not a rubber stamp: an unknown field and a wrong type are both rejected."""
    import jsonschema

    svc = json.loads(json.dumps(chart.by_kind(default_docs, "RayService")[0]))
    svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicaz"] = 1
    with pytest.raises(jsonschema.ValidationError):
        chart.validate_crd(svc)
    svc = json.loads(json.dumps(chart.by_kind(default_docs, "RayService")[0]))
    svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        chart.validate_crd(svc)


def test_validation_catches_a_broken_builtin(default_docs):
    import kubernetes_validate

    sts = json.loads(json.dumps(chart.by_kind(default_docs, "StatefulSet")[0]))
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = {"bad": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        chart.validate_builtin(sts)


# -- GPUs --------------------------------------------------------------------------------------------------

def test_gpu_requested_when_enabled(default_docs):
    svc = chart.by_kind(default_docs, "RayService")[0]
    model = chart.worker_group(svc, "model")
    res = model["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "1" and res["limits"]["nvidia.com/gpu"] == "1"
    assert model["rayStartParams"]["num-gpus"] == "1"
    assert model["template"]["spec"]["containers"][0]["image"].endswith("-gpu")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    deps = {d["name"]: d for d in serve["applications"][0]["deployments"]}
    assert deps["Model"]["ray_actor_options"]["num_gpus"] == 1
    assert "num_gpus" not in deps["Ingress"]["ray_actor_options"]
    # only the model group asks for GPUs
    for group in ("ingress",):
        text = json.dumps(chart.worker_group(svc, group))
        assert "nvidia.com/gpu" not in text


def test_gpu_count_follows_values():
    docs = chart.render({"gpu": {"perReplica": 2}})
    svc = chart.by_kind(docs, "RayService")[0]
    res = chart.worker_group(svc, "model")["template"]["spec"]["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "2"
    assert res["limits"]["memory"] == "24Gi"  # merged with, not replacing, the other limits


def test_no_gpu_when_disabled(ci_docs):
    for doc in ci_docs:
        for where, spec in chart.pod_specs(doc):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                assert "nvidia.com/gpu" not in json.dumps(c.get("resources", {})), f"{where}/{c['name']}"
    svc = chart.by_kind(ci_docs, "RayService")[0]
    assert "num-gpus" not in chart.worker_group(svc, "model")["rayStartParams"]
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert all("num_gpus" not in d["ray_actor_options"] for d in serve["applications"][0]["deployments"])


def test_autoscaling_bounds_come_from_values():
    docs = chart.render({"ray": {"model": {"minReplicas": 2, "maxReplicas": 7}},
                         "serve": {"model": {"minReplicas": 2, "maxReplicas": 7}}})
    svc = chart.by_kind(docs, "RayService")[0]
    g = chart.worker_group(svc, "model")
    assert (g["minReplicas"], g["maxReplicas"]) == (2, 7)
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    model = next(d for d in serve["applications"][0]["deployments"] if d["name"] == "Model")
    assert model["autoscaling_config"]["min_replicas"] == 2 and model["autoscaling_config"]["max_replicas"] == 7


# -- secrets and config --------------------------------------------------------------------------------------

def test_no_secret_value_outside_secrets(ci_docs):
    values = chart.ci_values()
    secrets = [values["secrets"]["keyPepper"], values["registryCredentials"]["password"]]
    for doc in ci_docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for s in secrets:
            assert s not in text, f"{doc['kind']}/{doc['metadata']['name']} carries a secret value"
    pepper = next(d for d in chart.by_kind(ci_docs, "Secret") if d["metadata"]["name"].endswith("-secrets"))
    import base64

    assert base64.b64decode(pepper["data"]["key-pepper"]).decode() == secrets[0]


def test_secret_env_comes_from_secret_refs(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for e in c.get("env", []):
                    if any(w in e["name"].upper() for w in ("PEPPER", "PASSWORD", "TOKEN", "SECRET")):
                        assert "valueFrom" in e and "value" not in e, f"{where}/{c['name']}: {e['name']} in plain text"


def test_configmaps_hold_no_secret_keys(docs):
    for cm in chart.by_kind(docs, "ConfigMap"):
        text = json.dumps(cm["data"]).lower()
        found = re.findall(r"pepper|password|secret|api_key|\btoken\b|credential", text)
        assert not found, f"ConfigMap {cm['metadata']['name']} mentions {found}"


def test_generated_pepper_is_random_and_kept_in_a_secret(default_docs):
    s = next(d for d in chart.by_kind(default_docs, "Secret") if d["metadata"]["name"].endswith("-secrets"))
    assert len(s["data"]["key-pepper"]) >= 48
    assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    other = next(d for d in chart.by_kind(chart.render(), "Secret") if d["metadata"]["name"].endswith("-secrets"))
    assert other["data"]["key-pepper"] != s["data"]["key-pepper"]


def test_config_file_is_valid_settings(docs, tmp_path, monkeypatch):
    """The rendered config.yaml is accepted by the app's own configuration loader."""
    from codetailor.config import load_settings

    cm = next(c for c in chart.by_kind(docs, "ConfigMap") if "config.yaml" in c["data"])
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    for k in list(__import__("os").environ):
        if k.startswith("CODETAILOR_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("CODETAILOR_CONFIG", str(path))
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    s = load_settings()
    assert s.retrieval.vector_store == "service"
    assert s.retrieval.qdrant_url.startswith("http://codetailor-qdrant.codetailor.svc:6333")
    assert s.serving.port == 50051 and s.serving.metrics_port == 8080


# -- probes, images, security -------------------------------------------------------------------------------

def test_every_long_running_container_has_probes(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            if where.endswith("/submitter") or where.startswith("CronJob/"):
                continue  # one-shot jobs
            for c in spec["containers"]:
                assert c.get("readinessProbe") and c.get("livenessProbe"), f"{where}/{c['name']} lacks probes"


def test_gateway_probes_use_grpc_health(default_docs):
    svc = chart.by_kind(default_docs, "RayService")[0]
    gw = next(c for c in chart.worker_group(svc, "ingress")["template"]["spec"]["containers"] if c["name"] == "gateway")
    assert gw["readinessProbe"]["grpc"]["port"] == 50051


def test_images_are_pinned(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                image = c["image"]
                if "@sha256:" in image:
                    continue
                repo, _, tag = image.rpartition(":")
                assert repo and "/" not in tag and tag not in ("", "latest"), f"{where}/{c['name']}: {image}"


def test_pods_run_as_non_root(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"


def test_resources_set(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                r = c.get("resources", {})
                assert r.get("requests", {}).get("memory") and r.get("limits", {}).get("memory"), f"{where}/{c['name']}"


# -- wiring ----------------------------------------------------------------------------------------------------

def test_home_is_shared_storage_mounted_where_the_app_expects(default_docs):
    pvc = chart.by_kind(default_docs, "PersistentVolumeClaim")[0]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    svc = chart.by_kind(default_docs, "RayService")[0]
    for where, spec in chart.pod_specs(svc):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"home": pvc["metadata"]["name"]}, where
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c["env"]}
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert env["CODETAILOR_HOME"] == mounts["home"] == "/var/lib/codetailor", f"{where}/{c['name']}"


def test_model_fetched_by_an_init_container_not_baked(default_docs):
    svc = chart.by_kind(default_docs, "RayService")[0]
    head = svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert head["initContainers"][0]["command"] == ["codetailor", "model", "fetch"]
    model = chart.worker_group(svc, "model")["template"]["spec"]
    assert "codetailor model path" in " ".join(model["initContainers"][0]["command"])


def test_grpc_service_selects_the_gateway_pods(docs):
    svc = next(s for s in chart.by_kind(docs, "Service") if s["metadata"]["name"].endswith("-grpc"))
    port = svc["spec"]["ports"][0]
    assert port["targetPort"] == "grpc" and port["appProtocol"] == "grpc"
    ray = chart.by_kind(docs, "RayService")[0]
    cluster = ray["spec"]["rayClusterConfig"]
    groups = {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}
    matched = [name for name, g in groups.items()
               if all(g["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())]
    assert matched == ["ingress"]
    gw = next(c for c in chart.worker_group(ray, "ingress")["template"]["spec"]["containers"] if c["name"] == "gateway")
    assert {"name": "grpc", "containerPort": port["port"]} in gw["ports"]


def test_serve_config_is_wired_to_the_app_config(docs):
    ray = chart.by_kind(docs, "RayService")[0]
    serve = yaml.safe_load(ray["spec"]["serveConfigV2"])
    app = serve["applications"][0]
    assert app["import_path"] and app["route_prefix"]
    cfg = yaml.safe_load(next(c for c in chart.by_kind(docs, "ConfigMap"))["data"]["config.yaml"])
    model = next(d for d in app["deployments"] if d["name"] == "Model")
    assert model["max_queued_requests"] == cfg["serving"]["max_queued_requests"]
    assert model["max_ongoing_requests"] == cfg["serving"]["max_ongoing_requests"]


def test_network_policies_and_disruption_budgets(default_docs):
    pols = {p["metadata"]["name"]: p for p in chart.by_kind(default_docs, "NetworkPolicy")}
    assert set(pols) == {"codetailor-ray", "codetailor-grpc", "codetailor-qdrant"}
    grpc_ports = pols["codetailor-grpc"]["spec"]["ingress"][0]["ports"]
    assert grpc_ports == [{"protocol": "TCP", "port": 50051}]
    pdbs = {p["metadata"]["name"] for p in chart.by_kind(default_docs, "PodDisruptionBudget")}
    assert pdbs == {"codetailor-ingress", "codetailor-model", "codetailor-qdrant"}
    off = chart.render({"networkPolicy": {"enabled": False}, "podDisruptionBudget": {"enabled": False}})
    assert not chart.by_kind(off, "NetworkPolicy") and not chart.by_kind(off, "PodDisruptionBudget")


def test_qdrant_statefulset_and_external_url():
    docs = chart.render()
    sts = chart.by_kind(docs, "StatefulSet")[0]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    ext = chart.render({"qdrant": {"enabled": False, "externalUrl": "http://qdrant.db:6333"}})
    assert not chart.by_kind(ext, "StatefulSet")
    cfg = yaml.safe_load(chart.by_kind(ext, "ConfigMap")[0]["data"]["config.yaml"])
    assert cfg["retrieval"]["qdrant_url"] == "http://qdrant.db:6333"


def test_service_monitor_targets_the_metrics_service(ci_docs):
    sm = chart.by_kind(ci_docs, "ServiceMonitor")[0]
    metrics_svc = next(s for s in chart.by_kind(ci_docs, "Service") if s["metadata"]["name"].endswith("-metrics"))
    assert all(metrics_svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert sm["spec"]["endpoints"][0]["port"] == metrics_svc["spec"]["ports"][0]["name"] == "metrics"


def test_prometheus_rule_matches_deploy_rules(ci_docs):
    rule = chart.by_kind(ci_docs, "PrometheusRule")[0]
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    assert (chart.chart_dir() / "files" / "codetailor.rules.yml").read_text() == RULES_FILE.read_text(), \
        "copy deploy/prometheus/rules/codetailor.rules.yml to helm/codetailor/files/"


# -- RayJob ------------------------------------------------------------------------------------------------------

def test_rayjob_runs_the_task_for_the_tenant(ci_docs):
    job = chart.by_kind(ci_docs, "RayJob")[0]
    assert job["spec"]["entrypoint"] == "'codetailor' 'train' '--tenant' 'acme'"
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_on_the_serving_cluster_and_with_gpu():
    docs = chart.render({"rayJob": {"enabled": True, "task": "eval", "tenant": "acme", "clusterName": "codetailor-raycluster-x"}})
    job = chart.by_kind(docs, "RayJob")[0]
    chart.validate_crd(job)
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "codetailor-raycluster-x"}
    assert "rayClusterSpec" not in job["spec"]
    docs = chart.render({"rayJob": {"enabled": True, "task": "train", "tenant": "acme"}})
    job = chart.by_kind(docs, "RayJob")[0]
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("values, message", [
    ({"task": "deploy", "tenant": "acme"}, "rayJob.task must be"),
    ({"task": "index", "tenant": ""}, "rayJob.tenant is required"),
])
def test_rayjob_rejects_bad_values(values, message):
    import helm_python

    with pytest.raises(helm_python.HelmError, match=message):
        chart.render({"rayJob": {"enabled": True, **values}})


# -- scheduled refresh ------------------------------------------------------------------------------------------

def test_refresh_cronjob_per_tenant_with_mounted_credentials(ci_docs):
    (job,) = chart.by_kind(ci_docs, "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["codetailor", "refresh", "--tenant", "acme", "--json", "--index-only"]
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "credentials")
    assert mount["readOnly"] is True and env["CODETAILOR_SYNC__CREDENTIALS_DIR"] == mount["mountPath"]
    volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == "git-credentials" and volume["secret"]["defaultMode"] == 0o400
    assert pod["automountServiceAccountToken"] is False


def test_the_ingress_workers_mount_the_credentials_for_the_admin_api(ci_docs, default_docs):
    """AddSource checks and RefreshSources fetches with them in the Ingress replicas; the gateway,
    which clients reach, never sees them."""
    (service,) = chart.by_kind(ci_docs, "RayService")
    pod = chart.worker_group(service, "ingress")["template"]["spec"]
    workers = {c["name"]: c for c in pod["containers"]}
    env = {e["name"]: e.get("value") for e in workers["ray-worker"]["env"]}
    mount = next(m for m in workers["ray-worker"]["volumeMounts"] if m["name"] == "credentials")
    assert mount["readOnly"] is True and env["CODETAILOR_SYNC__CREDENTIALS_DIR"] == mount["mountPath"]
    assert not any(m["name"] == "credentials" for m in workers["gateway"]["volumeMounts"])
    volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == "git-credentials" and volume["secret"]["defaultMode"] == 0o400
    (plain,) = chart.by_kind(default_docs, "RayService")
    assert "credentials" not in json.dumps(chart.worker_group(plain, "ingress"))


def test_refresh_cronjob_retrains_on_the_gpu_and_rejects_bad_values():
    import helm_python

    docs = chart.render({"refresh": {"enabled": True, "tenants": ["acme", "beta"]}})
    jobs = chart.by_kind(docs, "CronJob")
    assert [j["metadata"]["labels"]["codetailor.dev/tenant"] for j in jobs] == ["acme", "beta"]
    for j in jobs:
        chart.validate_builtin(j)
        c = j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert "--index-only" not in c["command"] and c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert not any(m["name"] == "credentials" for m in c["volumeMounts"])
    with pytest.raises(helm_python.HelmError, match="refresh.tenants must list"):
        chart.render({"refresh": {"enabled": True}})
    with pytest.raises(helm_python.HelmError, match="invalid tenant name"):
        chart.render({"refresh": {"enabled": True, "tenants": ["../etc"]}})


# -- the contract with the serving package ---------------------------------------------------------------------

def test_serve_deployment_names_match_the_app(default_docs):
    import re
    from pathlib import Path

    app_src = Path(chart.chart_dir()).parents[1] / "serving" / "app.py"
    names = set(re.findall(r'serve\.deployment\(\w+,\s*name="(\w+)"\)', app_src.read_text()))
    serve = yaml.safe_load(chart.by_kind(default_docs, "RayService")[0]["spec"]["serveConfigV2"])
    assert {d["name"] for d in serve["applications"][0]["deployments"]} == names


def test_serve_import_path_and_gateway_command_exist():
    """The RayService imports values.serve.importPath and the gateway sidecar runs values.gateway.command:
    both must exist in the serving package for the chart to work on a cluster."""
    import importlib

    values = yaml.safe_load((chart.chart_dir() / "values.yaml").read_text())
    module, _, attr = values["serve"]["importPath"].partition(":")
    mod = importlib.import_module(module)
    assert callable(getattr(mod, attr, None)), f"{module}.{attr} (the RayService's app builder) is missing"
    from codetailor.cli import build_parser

    cmd = values["gateway"]["command"]
    assert cmd[0] == "codetailor"
    build_parser().parse_args(cmd[1:])  # SystemExit (a failure) when the gateway command does not parse


# -- hardening ---------------------------------------------------------------------------------------------------

def _containers(docs):
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                yield f"{where}/{c['name']}", spec, c


def _tls_containers(docs, tmp_path) -> int:
    from codetailor.config import load_settings

    served = 0
    for where, spec, c in _containers(docs):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        cert, key = env.get("CODETAILOR_SERVING__TLS_CERT"), env.get("CODETAILOR_SERVING__TLS_KEY")
        assert (cert is None) == (key is None), f"{where}: TLS cert and key must be set together"
        if cert is None:
            continue
        served += 1
        load_settings(home=tmp_path, serving={"tls_cert": cert, "tls_key": key})  # the app accepts the pair
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for path in (cert, key):
            volume = volumes[mounts[path.rsplit("/", 1)[0]]]
            assert "secret" in volume, f"{where}: {path} is not from a Secret"
    return served


def test_tls_certificate_and_key_are_set_together(default_docs, ci_docs, tmp_path):
    """Half a TLS config is refused at start-up (codetailor.config): the chart must never render one,
    and both files must come from the mounted Secret."""
    assert _tls_containers(default_docs, tmp_path) == 0      # no Secret named: plaintext, no TLS variable
    assert chart.ci_values()["gateway"]["tls"]["existingSecret"]
    assert _tls_containers(ci_docs, tmp_path) == 1           # the gateway, with both files


def _env(c) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


def _secret_ref(e) -> tuple[str, str]:
    ref = e["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_ray_token_auth_is_on_with_the_token_from_the_secret(docs):
    secret = next(d for d in chart.by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-secrets"))
    assert len(secret["data"]["auth_token"]) >= 48  # KubeRay's authOptions reads this key
    name = secret["metadata"]["name"]
    for where, _, c in _containers(docs):
        env = _env(c)
        if "CODETAILOR_HOME" not in env and c["name"] != "ray-job-submitter":
            continue  # not one of ours (none today)
        assert env["RAY_AUTH_MODE"]["value"] == "token", where
        assert _secret_ref(env["RAY_AUTH_TOKEN"]) == (name, "auth_token"), where
    for doc in docs:
        cluster = {"RayService": lambda d: d["spec"]["rayClusterConfig"],
                   "RayJob": lambda d: d["spec"].get("rayClusterSpec")}.get(doc["kind"], lambda d: None)(doc)
        if cluster is not None:
            assert cluster["authOptions"] == {"mode": "token", "secretName": name}, doc["kind"]


def test_ray_auth_can_only_be_switched_off_explicitly():
    docs = chart.render({"ray": {"auth": {"enabled": False}}})
    envs = [_env(c) for _, _, c in _containers(docs) if "CODETAILOR_HOME" in _env(c)]
    assert envs and all(e["RAY_AUTH_MODE"]["value"] == "disabled" and "RAY_AUTH_TOKEN" not in e for e in envs)
    assert "authOptions" not in chart.by_kind(docs, "RayService")[0]["spec"]["rayClusterConfig"]


def test_dashboard_reachable_from_outside_the_release_by_the_operator_only(default_docs):
    svc = chart.by_kind(default_docs, "RayService")[0]
    head = svc["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # KubeRay deploys serveConfigV2 through it
    local = chart.render({"ray": {"dashboard": {"host": "127.0.0.1"}}})
    assert chart.by_kind(local, "RayService")[0]["spec"]["rayClusterConfig"]["headGroupSpec"][
        "rayStartParams"]["dashboard-host"] == "127.0.0.1"
    ray_np = next(d for d in chart.by_kind(default_docs, "NetworkPolicy") if d["metadata"]["name"].endswith("-ray"))
    outside = [r for r in ray_np["spec"]["ingress"] if "podSelector" not in r["from"][0] or "namespaceSelector" in r["from"][0]]
    dashboard = [r for r in outside if {"protocol": "TCP", "port": 8265} in r.get("ports", [])]
    assert len(dashboard) == 1 and dashboard[0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "kuberay-operator"}
    assert all(r.get("ports") for r in outside)  # from outside the release: named ports only


def test_qdrant_api_key_on_both_sides_from_one_secret(docs):
    secret = next(d for d in chart.by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-secrets"))
    ref = (secret["metadata"]["name"], "qdrant-api-key")
    assert len(secret["data"]["qdrant-api-key"]) >= 48
    qdrant = chart.by_kind(docs, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]
    assert _secret_ref(_env(qdrant)["QDRANT__SERVICE__API_KEY"]) == ref
    ours = [(w, _env(c)) for w, _, c in _containers(docs) if "CODETAILOR_HOME" in _env(c)]
    assert ours and all(_secret_ref(e["CODETAILOR_RETRIEVAL__QDRANT_API_KEY"]) == ref for _, e in ours)


def test_containers_are_locked_down(docs):
    for where, spec, c in _containers(docs):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False, where
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{where}: no writable /tmp under a read-only root"
    for doc in docs:
        for where, spec in chart.pod_specs(doc):
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            autoscaled_head = where.endswith("/head") and doc["kind"] == "RayService"
            # Only the head's autoscaler sidecar (added by KubeRay) talks to the Kubernetes API.
            assert spec["automountServiceAccountToken"] is (True if autoscaled_head else False), where


def test_no_service_account_token_anywhere_without_autoscaling():
    docs = chart.render({"ray": {"enableInTreeAutoscaling": False}})
    head = chart.by_kind(docs, "RayService")[0]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert head["automountServiceAccountToken"] is False


def test_the_gateway_mounts_the_home_read_only(docs):
    svc = chart.by_kind(docs, "RayService")[0]
    for c in chart.worker_group(svc, "ingress")["template"]["spec"]["containers"]:
        home = next(m for m in c["volumeMounts"] if m["name"] == "home")
        assert home.get("readOnly", False) is (c["name"] == "gateway"), c["name"]
