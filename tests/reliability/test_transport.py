"""Transport: TLS when a certificate is configured; by default only loopback
listens — the front server, and every port of Ray's own processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress


import psutil
import pytest

from serving.client import ClientError, CompletionClient

pytestmark = [pytest.mark.integration, pytest.mark.engine, pytest.mark.model]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
OK = dict(prefix="def add(a, b):\n    return", path="m.py", max_tokens=2)


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem", cert_pem


def test_tls_when_a_certificate_is_configured(serving_stack, tmp_path):
    from serving.front import FrontServer

    cert, key, cert_pem = self_signed(tmp_path)
    s = serving_stack.settings
    settings = s.model_copy(update={"serving": s.serving.model_copy(update={"tls_cert": cert, "tls_key": key})})
    front = FrontServer(settings, serving_stack.stack.ingress, serving_stack.stack.model)
    port = asyncio.run_coroutine_threadsafe(front.start(port=0), serving_stack.loop).result(30)
    try:
        key_ = serving_stack.keys["beta:developer"]
        with CompletionClient("127.0.0.1", port, key_, root_cert=cert_pem) as c:
            r = c.complete(**OK)
            assert r["system"] == "ft" and r["completion_tokens"] > 0
        with CompletionClient("127.0.0.1", port, key_, timeout=5) as plain:  # plaintext gets nothing
            with pytest.raises(ClientError) as e:
                plain.complete(**OK)
            assert e.value.code == "UNAVAILABLE"
        (tmp_path / "other").mkdir()
        other_pem = self_signed(tmp_path / "other")[2]
        with CompletionClient("127.0.0.1", port, key_, root_cert=other_pem, timeout=5) as wrong:
            with pytest.raises(ClientError) as e:  # a certificate the client does not trust
                wrong.complete(**OK)
            assert e.value.code == "UNAVAILABLE"
    finally:
        asyncio.run_coroutine_threadsafe(front.stop(0.5), serving_stack.loop).result(30)


def _name(proc: psutil.Process) -> tuple[str, str] | None:
    """A live process's name and command, or None for one that ended or is a zombie (no sockets)."""
    try:
        return proc.name(), " ".join(proc.cmdline()[:2])[:80]
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
        return None


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    try:
        return [(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def test_default_binds_loopback_only(serving_stack):
    """The front server (in the Ingress replica, a child process of this one) listens on
    loopback only, and a second server on its port is refused rather than sharing it."""
    from codetailor.config import ServingConfig
    from serving.front import FrontServer

    assert ServingConfig().host == "127.0.0.1"
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    on_port = [(p.pid, ip) for p in procs for ip, port in _listening(p) if port == serving_stack.port]
    assert on_port, "nothing of the stack listens on the front server's port"
    assert all(ip in LOOPBACK for _, ip in on_port), on_port
    assert len({pid for pid, _ in on_port}) == 1 and on_port[0][0] != psutil.Process().pid  # the replica

    second = FrontServer(serving_stack.settings, serving_stack.stack.ingress, serving_stack.stack.model)
    with pytest.raises(Exception):  # SO_REUSEPORT is off with one Ingress replica
        asyncio.run_coroutine_threadsafe(second.start(port=serving_stack.port), serving_stack.loop).result(30)


# Ray 2.60 turns `_node_ip_address="127.0.0.1"` into the machine's address
# (services.resolve_ip_for_localhost) and then binds GCS, raylet, workers and agents
# on all interfaces; start_stack sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so the node
# address stays 127.0.0.1. Each Serve replica's inter-deployment gRPC server, which Ray
# binds to "[::]:0" with no option, is moved to 127.0.0.1 by serving/_loopback.py.
def test_ray_ports_are_not_exposed_beyond_the_host(serving_stack):
    """Every listening socket of the cluster's processes (GCS, raylet, workers, agents,
    replicas, the metrics exporter) binds a loopback address."""
    procs = [psutil.Process()] + psutil.Process().children(recursive=True)
    names = {p.pid: n for p in procs if (n := _name(p))}
    exposed = [(names.get(p.pid), ip, port) for p in procs for ip, port in _listening(p) if ip not in LOOPBACK]
    assert len(procs) > 3  # the cluster's processes are children of this one
    assert any(n and n[0].startswith("ray::ServeReplica") for n in names.values())  # replicas were checked
    assert not exposed, exposed
