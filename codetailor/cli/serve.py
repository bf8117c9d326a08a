"""`codetailor serve` (the gRPC service) and `codetailor complete` (its client)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from codetailor.cli import add_cursor_flags, add_json_flag, read_cursor
from codetailor.config import get_settings
from codetailor.errors import CodetailorError, RemoteFailed


class CompletionFailed(RemoteFailed):
    pass


def register(sub) -> None:
    s = sub.add_parser("serve", help="start the gRPC completion service (Ctrl-C stops it)")
    s.add_argument("--host", help="bind address (default: serving.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: serving.port, 50051)")
    s.add_argument("--replicas", type=int, help="model replicas (default: serving.replicas)")
    s.add_argument("--attach", action="store_true",
                   help="run only the gRPC front server, joining a Ray cluster whose Serve app already runs "
                        "(e.g. the Helm chart's gateway sidecar); Ctrl-C leaves the cluster running")
    s.add_argument("--ray-address", help="with --attach: the cluster (default: env RAY_ADDRESS, else this node's)")
    s.add_argument("--wait", type=float, default=600.0,
                   help="with --attach: seconds to wait for the Serve app to be running (default 600)")
    s.add_argument("--refresh-interval", type=float, metavar="SECONDS",
                   help="re-index every tenant's connected sources this often (default: sync.refresh_interval, "
                        "0 = never); retraining stays with `codetailor refresh`")
    s.set_defaults(handler=_serve)

    c = sub.add_parser("complete", help="ask a running service for a completion")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=50051)
    c.add_argument("--api-key", help="API key (default: env CODETAILOR_API_KEY)")
    add_cursor_flags(c, "none: the server's untitled")
    c.add_argument("--max-tokens", type=int, default=32)
    c.add_argument("--temperature", type=float, default=0.0)
    c.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    c.add_argument("--stream", action="store_true", help="print the completion as it is generated")
    c.add_argument("--ca-cert", type=Path, help="the server's CA certificate (TLS)")
    add_json_flag(c)
    c.set_defaults(handler=_complete)


def _serve(args) -> None:
    if not args.attach and (args.ray_address is not None):
        raise CodetailorError("--ray-address needs --attach")
    if args.attach and args.replicas is not None:
        raise CodetailorError("--replicas does not apply with --attach (the cluster's Serve config sets replicas)")
    if args.refresh_interval is not None and args.refresh_interval < 0:
        raise CodetailorError("--refresh-interval must be >= 0")
    settings = get_settings()
    interval = settings.sync.refresh_interval if args.refresh_interval is None else args.refresh_interval
    over = {k: v for k, v in (("host", args.host), ("port", args.port), ("replicas", args.replicas)) if v is not None}
    if over:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=over)})
    say = lambda msg: print(f"codetailor: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    with _interrupts_during_startup() as interrupted:
        if args.attach:
            from serving.app import attach_stack

            say(f"joining the Ray cluster ({args.ray_address or os.environ.get('RAY_ADDRESS') or 'this node'}) ...")
            stack = attach_stack(settings, args.ray_address, wait_s=args.wait, progress=say)
            where = "metrics on the Ray node's metrics-export port"
        else:
            from serving.app import start_stack

            say(f"starting Ray and the model replicas (home {settings.home}) ...")
            stack = start_stack(settings)
            where = f"metrics on 127.0.0.1:{stack.metrics_port}/metrics"
    refresher = None
    try:
        if not interrupted.is_set():
            if interval > 0:
                from codetailor.refresh import Refresher

                say(f"refreshing connected sources every {interval:g} s")
                refresher = Refresher(settings, interval, log=say).start()
            _run_front(settings, stack, where)
    finally:
        if refresher is not None:
            refresher.stop()
        stack.stop()
    say("stopped")


@contextlib.contextmanager
def _interrupts_during_startup():
    """Ctrl-C/SIGTERM while Ray starts: raise KeyboardInterrupt (the start cleans up, the command
    exits 130) and remember it. Seen once: a Ctrl-C during `serve.run` was lost somewhere in Ray
    and the server came up anyway; with the flag, it is stopped as soon as the start returns."""
    import signal
    import threading

    interrupted = threading.Event()

    def on_signal(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run_front(settings, stack, where: str) -> None:
    """Until SIGINT/SIGTERM. A local stack's front server runs in its Ingress replica
    (stack.port); attached, this process runs one that calls the Ingress through a handle."""
    import asyncio
    import signal

    from serving.front import FrontServer

    async def run() -> None:
        front = None
        port = getattr(stack, "port", None)
        if port is None:
            from serving.tenant_state import SharedTenantState

            front = FrontServer(settings, stack.ingress, stack.model, tenant_state=SharedTenantState.connect())
            port = await front.start()
            served_tls = front.tls
        else:  # the Ingress replica's front server started from these same (validated) settings
            served_tls = settings.serving.tls
        tls = "TLS" if served_tls else "plaintext"
        print(f"codetailor: listening on {settings.serving.host}:{port} (gRPC, {tls}); {where}; Ctrl-C stops",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("codetailor: stopping ...", file=sys.stderr, flush=True)
        if front is not None:
            await front.stop()

    asyncio.run(run())


def _complete(args):
    from serving.client import ClientError, CompletionClient

    key = args.api_key or os.environ.get("CODETAILOR_API_KEY")
    cursor = read_cursor(args, "")
    root = args.ca_cert.read_bytes() if args.ca_cert else None
    # The server lays the cursor out and returns the text to insert (codetailor.completion).
    fields = dict(prefix=cursor.prefix, suffix=cursor.suffix, path=cursor.path, cursor_kind=cursor.kind,
                  max_tokens=args.max_tokens, temperature=args.temperature)
    try:
        with CompletionClient(args.host, args.port, key, root_cert=root, timeout=args.timeout) as client:
            if args.stream:
                text, last = "", {}
                for item in client.stream(**fields):
                    text += item["text"]
                    last = item
                    if not args.json:
                        print(item["text"], end="", flush=True)
                if not args.json:
                    print()
                result = dict(last, text=text)
            else:
                result = client.complete(**fields)
    except ClientError as e:
        raise CompletionFailed(f"{e.code}: {e.message}") from None
    # "completion": the key `codetailor generate --json` names it with too.
    out = {"id": result["id"], "completion": result["text"], "system": result["system"],
           "adapter_version": result["adapter_version"], "latency_ms": result["latency_ms"]}
    if args.json:
        return out
    if not args.stream:
        print(result["text"])
    lat = " ".join(f"{k}={v:.1f}" for k, v in out["latency_ms"].items())
    print(f"[{out['system']} {out['adapter_version'] or '-'}] latency ms: {lat}", file=sys.stderr)
    return None
