"""Half a TLS configuration is a start-up error: with only a certificate (or only a key)
the front server would otherwise serve plaintext while the banner said TLS."""

from __future__ import annotations

import asyncio

import pytest

from codetailor.config import load_settings
from codetailor.errors import ConfigError


@pytest.mark.parametrize("given", ["tls_cert", "tls_key"])
def test_half_a_tls_config_is_refused(tmp_path, given):
    missing = "tls_key" if given == "tls_cert" else "tls_cert"
    with pytest.raises(ConfigError, match=f"serving: .*{given} is set but {missing} is not"):
        load_settings(home=tmp_path, serving={given: tmp_path / "x.pem"})


def test_half_a_tls_config_from_the_environment_stops_serve(tmp_home, monkeypatch, capsys):
    from codetailor.cli import main

    monkeypatch.setenv("CODETAILOR_SERVING__TLS_CERT", str(tmp_home / "cert.pem"))
    assert main(["serve"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tls_cert is set but tls_key is not" in err


def test_the_front_server_reports_what_it_serves(tmp_path):
    from serving.front import FrontServer, IngressCalls
    from tests.reliability.test_transport import self_signed

    cert, key, _ = self_signed(tmp_path)
    for tls, serving in ((False, {}), (True, {"tls_cert": cert, "tls_key": key})):
        front = FrontServer(load_settings(home=tmp_path, key_pepper="p", serving=serving), IngressCalls())

        async def up_and_down():
            await front.start(port=0)
            await front.stop(0)

        asyncio.run(up_and_down())
        assert front.tls is tls


def test_an_unreadable_tls_file_is_a_config_error(tmp_path):
    from serving.front import FrontServer, IngressCalls

    settings = load_settings(home=tmp_path, key_pepper="p",
                             serving={"tls_cert": tmp_path / "no-cert.pem", "tls_key": tmp_path / "no-key.pem"})
    with pytest.raises(ConfigError, match="cannot read the TLS file"):
        asyncio.run(FrontServer(settings, IngressCalls()).start(port=0))
