"""Start and stop the whole stack: a private local Ray cluster, the Serve app
(Ingress -> Model), and the gRPC front server.

Ray's exposure, decided here for the local default:
- Ray binds to 127.0.0.1 (`_node_ip_address`), runs no dashboard and no Serve
  HTTP/gRPC proxy (clients reach only the front server), and keeps its session
  files in a private (0700) temp directory removed on stop.
- Token authentication is ON with a fresh random token per run, passed to Ray's
  processes through the environment (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN), so
  nothing is written under $HOME/.ray and another local user cannot submit work
  to the cluster's ports. An explicit RAY_AUTH_MODE in the environment wins.
- Metrics: Ray's one metrics-export port, `serving.metrics_port`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from codetailor.config import Settings
from codetailor.model import resolve_base_model

log = logging.getLogger("codetailor.serving.app")
APP_NAME = "codetailor"
ROOT = Path(__file__).resolve().parents[1]


def build_app(settings: Settings, model_path: Path):
    """The Serve application graph (not started)."""
    from ray import serve

    from serving.ingress import Ingress
    from serving.model import ModelServer

    cfg = settings.serving
    model = serve.deployment(ModelServer, name="Model").options(
        num_replicas=cfg.replicas,
        max_ongoing_requests=settings.engine.max_num_seqs,
        max_queued_requests=cfg.max_queued_requests,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10, health_check_timeout_s=30, graceful_shutdown_timeout_s=5,
    )
    ingress = serve.deployment(Ingress, name="Ingress").options(
        num_replicas=1,
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        ray_actor_options={"num_cpus": 0},
    )
    return ingress.bind(settings, model.bind(settings, str(model_path)), str(model_path))


@dataclass
class Stack:
    """A running cluster + app. `FrontServer` is started separately on an event loop."""

    settings: Settings
    temp_dir: Path
    ingress: object
    model: object
    metrics_port: int
    _env_set: list[str] = field(default_factory=list)

    def stop(self) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()
        except Exception as e:  # keep going: the cluster must still stop
            log.warning("serve shutdown: %s", e)
        ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_stack(settings: Settings, *, num_cpus: int | None = None) -> Stack:
    """Start Ray and the Serve app; returns once the model replicas are up."""
    model_path = resolve_base_model(settings)
    # Every Ray process must import codetailor/engine/serving from this tree.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    temp_dir = Path(tempfile.mkdtemp(prefix="ct-ray-"))  # short: Ray puts unix sockets here
    os.chmod(temp_dir, 0o700)

    import ray
    from ray import serve

    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        _metrics_export_port=settings.serving.metrics_port,
        _temp_dir=str(temp_dir),
        num_cpus=num_cpus or os.cpu_count(),
        object_store_memory=256 * 1024**2,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    try:
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        ingress = serve.run(build_app(settings, model_path), name=APP_NAME, route_prefix=None, blocking=False)
        model = serve.get_deployment_handle("Model", app_name=APP_NAME)
    except BaseException:
        _log_deploy_failure(temp_dir)
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return Stack(settings, temp_dir, ingress, model, settings.serving.metrics_port)


def _log_deploy_failure(temp_dir: Path) -> None:
    """A failed deployment's cause is in Serve's status and the replica logs, about to go."""
    from ray import serve

    try:
        for name, d in serve.status().applications[APP_NAME].deployments.items():
            if d.message:
                log.error("deployment %s: %s", name, d.message)
    except Exception as e:
        log.error("no deployment status: %s", e)
