"""Keep a local cluster's Serve replicas on loopback.

Ray 2.60 binds each Serve replica's inter-deployment gRPC server to "[::]:0"
(ray/serve/_private/replica.py) and has no option for it. In the local default
(`codetailor serve` → `start_stack`) every replica runs on this host, so that
port has no reason to be reachable from the network (it would still need the
cluster token). `start_stack` sets CODETAILOR_RAY_LOOPBACK=1, which every Ray
process it starts inherits; a replica process that sees it binds that server to
127.0.0.1 instead. A RayService (Helm, KubeRay) does not set it: there, replicas
on other nodes must reach each other.
"""

from __future__ import annotations

import os

ENV = "CODETAILOR_RAY_LOOPBACK"
_MARK = "_codetailor_loopback"


def pin_replica_grpc_to_loopback() -> None:
    """Called at import by the modules a replica unpickles (serving.model, serving.ingress),
    which is before Serve starts the replica's gRPC server."""
    if os.environ.get(ENV) != "1":
        return
    try:
        import ray.serve._private.replica as replica
    except ImportError:
        return
    stock = replica.add_port_to_grpc_server
    if getattr(stock, _MARK, False):
        return

    def add_port_to_grpc_server(server, address: str):
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return stock(server, address)

    setattr(add_port_to_grpc_server, _MARK, True)
    replica.add_port_to_grpc_server = add_port_to_grpc_server
