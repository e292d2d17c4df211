"""What a PuppetDB TLS failure tells the operator does not depend on how the server
refused: TLS 1.3 servers check a client certificate after the client's handshake is done,
and refuse it with an alert or by closing the connection before the alert is read."""

from __future__ import annotations

import ssl
from types import SimpleNamespace
from typing import Any

import pytest

from orch.core.config import load_settings
from orch.discovery.puppetdb import PuppetDBSettings, _unreachable

URL = "https://puppetdb:8081"


def _message(reason: object, **section: Any) -> str:
    settings = load_settings(overrides={"plugins": {"puppetdb": {"url": URL, **section}}},
                             environ={})
    client: Any = SimpleNamespace(settings=settings)
    return str(_unreachable(URL, reason, ssl.create_default_context(),
                            PuppetDBSettings.from_settings(settings), client))


def _alert() -> ssl.SSLError:
    error = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ...")
    error.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    return error


@pytest.mark.parametrize("reason", [
    _alert(),
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_a_refused_client_certificate_is_named_however_the_server_refused(
        reason: object) -> None:
    assert "refused the TLS handshake" in _message(reason)
    assert "sent no client certificate" in _message(reason)
    assert "sent client certificate /etc/orch/me.pem" in _message(
        reason, cert="/etc/orch/me.pem", key="/etc/orch/me.key")


def test_an_unreachable_host_is_not_blamed_on_certificates() -> None:
    message = _message(ConnectionRefusedError(111, "Connection refused"))
    assert message == f"PuppetDB at {URL} not reachable: [Errno 111] Connection refused"
