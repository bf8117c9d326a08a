"""Build and run the Serve application (Ingress -> Model), three ways:

- `start_stack` (`codetailor serve`, tests, bench): a private local Ray cluster
  and the app, for one machine; the gRPC front server runs inside the Ingress
  replica (serving/ingress.py), so a request crosses one Serve hop, not two.
- `app_builder` (a Ray Serve application builder; the Helm chart's serveConfigV2
  `import_path: serving.app:app_builder`): the same app on a cluster someone
  else started (KubeRay's RayService). Settings come from CODETAILOR_CONFIG /
  the environment, deployment options from the config's `args` (see
  `BuilderArgs`); options in the config's `deployments:` section still win.
- `attach_stack` (`codetailor serve --attach`): join a running cluster whose
  Serve app is deployed, for a front server alone (the chart's gateway sidecar),
  which calls the Ingress deployment through a handle.

Ray's exposure, decided here for the local default:
- Ray runs no dashboard and no Serve HTTP/gRPC proxy (clients reach only the
  front server) and keeps its session files in a private (0700) temp directory
  removed on stop. `_node_ip_address="127.0.0.1"` is passed, but Ray 2.60 still
  registers the machine's address and its GCS and raylet listen on all
  interfaces (checked with `ss -ltnp`), so the token below is what keeps others out.
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codetailor.config import Settings, load_settings
from codetailor.errors import ConfigError, Unavailable
from codetailor.model import resolve_base_model
from serving._loopback import ENV as LOOPBACK_ENV

log = logging.getLogger("codetailor.serving.app")
APP_NAME = "codetailor"
ROOT = Path(__file__).resolve().parents[1]


# Ray Serve's own switches for a shorter request path (a subset of RAY_SERVE_THROUGHPUT_OPTIMIZED;
# read by each Ray process at import, so given to the replicas through their runtime_env):
# replica user code and the router on the replica's main event loop instead of a thread and a
# loop of their own each, and deployment handles calling replicas over direct gRPC instead of
# Ray actor tasks. On the 2-core VM one handle hop takes 1.3 ms with them and 2.6 ms without
# (docs/bench-serving.md). Left out of the umbrella flag:
# direct ingress (replicas serving HTTP themselves; clients reach only the front server here)
# and buffered request logs. An explicit value in the environment wins. Set for the local stack
# (`start_stack`); a RayService can set the same variables in its spec.
SERVE_FAST_PATH = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
}


class ServingUnavailable(Unavailable):
    pass


# -- the application graph -------------------------------------------------------------------------

class DeploymentArgs(BaseModel):
    """Options of one deployment; unset ones take the local defaults (see `build_app`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    replicas: int | None = Field(None, ge=1)                 # a fixed replica count, or ...
    min_replicas: int | None = Field(None, ge=0)             # ... Serve autoscaling between these
    max_replicas: int | None = Field(None, ge=1)
    target_ongoing_requests: float | None = Field(None, gt=0)  # the autoscaler's per-replica target
    max_ongoing_requests: int | None = Field(None, ge=1)     # per replica, before requests queue
    max_queued_requests: int | None = Field(None, ge=-1)     # -1: unbounded (Serve's meaning)
    num_cpus: float = Field(0, ge=0)                          # 0 locally: replicas share the few cores
    num_gpus: float = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_way_to_scale(self):
        auto = (self.min_replicas, self.max_replicas, self.target_ongoing_requests)
        if self.replicas is not None and any(x is not None for x in auto):
            raise ValueError("give either replicas (fixed) or min/max_replicas (autoscaling), not both")
        if self.max_replicas is None and any(x is not None for x in auto):
            raise ValueError("autoscaling needs max_replicas")
        if self.max_replicas is not None and (self.min_replicas or 0) > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self


class BuilderArgs(BaseModel):
    """The Serve config's `args` for `app_builder`: `{model: {...}, ingress: {...}}`, or flat
    `model_<option>` / `ingress_<option>` keys (what `serve run ... model_replicas=2` passes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: DeploymentArgs = DeploymentArgs()
    ingress: DeploymentArgs = DeploymentArgs()


def parse_builder_args(args: dict[str, Any] | None) -> BuilderArgs:
    nested: dict[str, dict] = {"model": {}, "ingress": {}}
    for key, value in (args or {}).items():
        if key in nested and isinstance(value, dict):
            nested[key].update(value)
            continue
        group, _, option = key.partition("_")
        if group not in nested or not option:
            raise ConfigError(f"unknown app builder argument {key!r}: use model_<option> or ingress_<option> "
                              f"(options: {', '.join(DeploymentArgs.model_fields)})")
        nested[group][option] = value
    try:
        return BuilderArgs(**nested)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid app builder arguments: {where}") from None


def _options(d: DeploymentArgs, *, replicas: int, max_ongoing: int, max_queued: int,
             env: dict[str, str] | None = None) -> dict:
    actor: dict[str, Any] = {"num_cpus": d.num_cpus}
    if d.num_gpus:
        actor["num_gpus"] = d.num_gpus
    if env:
        actor["runtime_env"] = {"env_vars": env}
    opts: dict[str, Any] = {
        "max_ongoing_requests": d.max_ongoing_requests or max_ongoing,
        "max_queued_requests": max_queued if d.max_queued_requests is None else d.max_queued_requests,
        "ray_actor_options": actor,
    }
    if d.max_replicas is not None:
        auto = {"min_replicas": 1 if d.min_replicas is None else d.min_replicas, "max_replicas": d.max_replicas}
        if d.target_ongoing_requests is not None:
            auto["target_ongoing_requests"] = d.target_ongoing_requests
        opts["autoscaling_config"] = auto
    else:
        opts["num_replicas"] = d.replicas or replicas
    return opts


def build_app(settings: Settings, model_path: Path, args: BuilderArgs | None = None, *, fast_path: bool = False,
              front_port: int | None = None):
    """The Serve application graph (not started). Without args: the local defaults.
    fast_path: replicas get SERVE_FAST_PATH (explicit values in this environment win).
    front_port: each Ingress replica runs the gRPC front server on serving.host:front_port
    (0: a free port); several replicas share the port (SO_REUSEPORT)."""
    from ray import serve

    from serving.ingress import Ingress
    from serving.model import ModelServer

    args = args or BuilderArgs()
    cfg = settings.serving
    env = {k: os.environ.get(k, v) for k, v in SERVE_FAST_PATH.items()} if fast_path else None
    model = serve.deployment(ModelServer, name="Model").options(
        **_options(args.model, replicas=cfg.replicas, max_ongoing=settings.engine.max_num_seqs,
                   max_queued=cfg.max_queued_requests, env=env),
        health_check_period_s=10, health_check_timeout_s=30, graceful_shutdown_timeout_s=5,
    )
    ingress_opts = _options(args.ingress, replicas=1, max_ongoing=cfg.max_ongoing_requests,
                            max_queued=cfg.max_queued_requests, env=env)
    ingress = serve.deployment(Ingress, name="Ingress").options(**ingress_opts)
    shared_port = "autoscaling_config" in ingress_opts or ingress_opts["num_replicas"] > 1
    return ingress.bind(settings, model.bind(settings, str(model_path)), str(model_path),
                        front_port=front_port, reuse_port=front_port is not None and shared_port)


def app_builder(args: dict[str, Any]):
    """Ray Serve application builder (serveConfigV2 `import_path: serving.app:app_builder`).

    Runs inside a cluster someone else started (KubeRay), so it starts nothing: it
    reads the settings (CODETAILOR_CONFIG, CODETAILOR_* variables; the home must be
    mounted at the same path on every node), resolves the base model and returns
    the same Ingress -> Model graph as `codetailor serve`.
    """
    builder_args = parse_builder_args(args)
    settings = load_settings()
    return build_app(settings, resolve_base_model(settings), builder_args)


# -- a private local cluster (`codetailor serve`) ----------------------------------------------------

@dataclass
class Stack:
    """A running cluster + app; clients reach the Ingress replica's front server on `port`."""

    settings: Settings
    temp_dir: Path
    ingress: object
    model: object
    metrics_port: int
    port: int
    _env_set: list[str] = field(default_factory=list)

    def stop(self) -> None:
        import ray
        from ray import serve

        try:  # health NOT_SERVING and calls in flight finish before the replicas go
            self.ingress.stop_front.remote().result(timeout_s=15)
        except Exception as e:
            log.warning("front server stop: %s", e)
        try:
            serve.shutdown()
        except Exception as e:  # keep going: the cluster must still stop
            log.warning("serve shutdown: %s", e)
        ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_stack(settings: Settings, *, num_cpus: int | None = None, port: int | None = None) -> Stack:
    """Start Ray and the Serve app; returns once the model replicas are up and the front
    server listens on serving.host and `port` (default serving.port; 0: a free port)."""
    model_path = resolve_base_model(settings)
    # Every Ray process must import codetailor/engine/serving from this tree.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    # Ray 2.60 replaces _node_ip_address="127.0.0.1" with the machine's address unless this
    # is set, exposing GCS, raylet and workers beyond the host (tests/reliability/test_transport.py).
    # Only for this local single-node cluster; a RayService sets its own addresses.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault(LOOPBACK_ENV, "1")  # and Serve replicas' own gRPC servers (serving/_loopback.py)
    # This process's handles (the front server's) call the Ingress over direct gRPC too. The
    # other two switches stay out of this process: a handle whose router shares the caller's
    # loop cannot be used outside one, and admin code here calls handles synchronously.
    os.environ.setdefault("RAY_SERVE_USE_GRPC_BY_DEFAULT", SERVE_FAST_PATH["RAY_SERVE_USE_GRPC_BY_DEFAULT"])
    temp_dir = Path(tempfile.mkdtemp(prefix="ct-ray-"))  # short: Ray puts unix sockets here
    os.chmod(temp_dir, 0o700)

    import ray
    from ray import serve

    try:  # an interrupt anywhere in here (Ctrl-C during the minute-long start) cleans up too
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
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        app = build_app(settings, model_path, fast_path=True,
                        front_port=settings.serving.port if port is None else port)
        ingress = serve.run(app, name=APP_NAME, route_prefix=None, blocking=False)
        model = serve.get_deployment_handle("Model", app_name=APP_NAME)
        try:
            bound = ingress.listening_port.remote().result(timeout_s=60)
        except Exception as e:  # e.g. the port is taken; the cause is in the replica's error
            where = f"{settings.serving.host}:{settings.serving.port if port is None else port}"
            raise ServingUnavailable(f"the front server could not listen on {where}: {_cause(e)}") from None
    except BaseException:
        if ray.is_initialized():
            _log_deploy_failure(temp_dir)
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return Stack(settings, temp_dir, ingress, model, settings.serving.metrics_port, bound)


def _cause(e: BaseException) -> str:
    """The last line of a replica's error (Ray wraps it in a traceback)."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[-1] if lines else type(e).__name__


def _log_deploy_failure(temp_dir: Path) -> None:
    """A failed deployment's cause is in Serve's status and the replica logs, about to go."""
    from ray import serve

    try:
        for name, d in serve.status().applications[APP_NAME].deployments.items():
            if d.message:
                log.error("deployment %s: %s", name, d.message)
    except Exception as e:
        log.error("no deployment status: %s", e)


# -- joining a running cluster (`codetailor serve --attach`) --------------------------------------------

@dataclass
class Attached:
    """Handles into an app on a cluster this process joined; `stop` only disconnects."""

    settings: Settings
    address: str
    ingress: object
    model: object

    def stop(self) -> None:
        import ray

        ray.shutdown()  # this driver only: the cluster and the app keep running


def attach_stack(settings: Settings, address: str | None = None, *, app_name: str = APP_NAME,
                 wait_s: float = 600.0, progress: Callable[[str], None] = log.info) -> Attached:
    """Join the Ray cluster at `address` (default: $RAY_ADDRESS, else the cluster of this
    node, as `ray start` recorded it) and wait until the Serve app `app_name` is running.
    Never starts a cluster: with nothing to join it fails with ServingUnavailable."""
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ServingUnavailable(f"cannot join a Ray cluster at {address!r}: {e}") from None
    try:
        ingress, model = _wait_for_app(app_name, wait_s, progress)
    except BaseException:
        ray.shutdown()
        raise
    return Attached(settings, address, ingress, model)


def _wait_for_app(app_name: str, wait_s: float, progress: Callable[[str], None]):
    """Poll Serve until the app runs (KubeRay deploys it after the cluster is up)."""
    from ray import serve

    deadline = time.monotonic() + wait_s
    last = None
    while True:
        try:
            app = serve.status().applications.get(app_name)
            state = ("not deployed", "") if app is None else (str(app.status), app.message or "")
        except Exception as e:  # no Serve controller yet
            state = ("Serve not started", type(e).__name__)
        if state[0].endswith("RUNNING"):
            return (serve.get_deployment_handle("Ingress", app_name=app_name),
                    serve.get_deployment_handle("Model", app_name=app_name))
        if state != last:
            progress(f"waiting for the Serve app {app_name!r}: {state[0]}" + (f" ({state[1]})" if state[1] else ""))
            last = state
        if time.monotonic() > deadline:
            raise ServingUnavailable(f"the Serve app {app_name!r} is not running after {wait_s:.0f} s: {state[0]}")
        time.sleep(2)
