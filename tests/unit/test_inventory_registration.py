"""The registration message and the registry's bookkeeping, without a broker: what is
accepted, what is refused and why, and stale marking and expiry."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.config import load_settings
from orch.core.errors import ConfigError, OrchError, ProtocolError, SecurityError
from orch.core.inventory import NodeRecord
from orch.core.plugins import default_registry
from orch.inventory import registration
from orch.inventory.registry import Registry
from orch.inventory.settings import InventorySettings
from orch.security import pki
from orch.security.x509 import X509Provider


class CA:
    def __init__(self) -> None:
        self.cert, self.key = pki.create_ca("test CA", "ed25519")

    def provider(self, name: str, role: str) -> X509Provider:
        cert, key = pki.issue_certificate(self.cert, self.key, name, role, key_type="ed25519")
        return X509Provider(credentials=pki.Credentials(cert, key, (self.cert,)),
                            clock_skew=5)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def data(identity: str = "web1", **changes: Any) -> dict[str, Any]:
    base = registration.registration_data(identity, "orch", {"role": "web"},
                                          frozenset({"base"}), frozenset({"rpcutil"}), 100.0)
    return {**base, **changes}


def opened(raw: bytes, verifier: X509Provider, **kwargs: Any) -> NodeRecord:
    return registration.open_registration(raw, verifier, "orch", max_bytes=1 << 20,
                                          clock_skew=5, **kwargs)


def test_a_signed_registration_opens_to_the_node_record(ca: CA) -> None:
    web1, registry = ca.provider("web1", "node"), ca.provider("reg", "client")
    record = opened(registration.seal(data(), web1), registry, now=time.time())
    assert (record.identity, record.collective, dict(record.facts), record.classes,
            record.agents, record.started) == ("web1", "orch", {"role": "web"}, ("base",),
                                               ("rpcutil",), 100.0)


def test_a_node_cannot_register_another_identity(ca: CA) -> None:
    web1, registry = ca.provider("web1", "node"), ca.provider("reg", "client")
    with pytest.raises(SecurityError):  # its certificate does not name db1
        opened(registration.seal(data("db1"), web1), registry)


def test_a_tampered_registration_is_refused(ca: CA) -> None:
    web1, registry = ca.provider("web1", "node"), ca.provider("reg", "client")
    envelope = json.loads(registration.seal(data(), web1))
    envelope["body"] = envelope["body"].replace('"role":"web"', '"role":"db"')
    with pytest.raises(SecurityError):
        opened(json.dumps(envelope).encode(), registry)


@pytest.mark.parametrize("offset", [-registration.MAX_AGE - 60, 60])
def test_a_replayed_or_future_registration_is_refused(ca: CA, offset: float) -> None:
    web1, registry = ca.provider("web1", "node"), ca.provider("reg", "client")
    raw = registration.seal(data(), web1)
    with pytest.raises(ProtocolError, match="outside the accepted window"):
        opened(raw, registry, now=time.time() - offset)


@pytest.mark.parametrize("changes, message", [
    ({"collective": "other"}, "for collective 'other'"),
    ({"facts": []}, "facts must be an object"),
    ({"classes": "base"}, "classes must be a list"),
    ({"agents": [1]}, "agents must be a list"),
    ({"version": None}, "version must be"),
    ({"started": "yesterday"}, "started must be a number"),
])
def test_a_malformed_registration_says_what_is_wrong(ca: CA, changes: dict[str, Any],
                                                     message: str) -> None:
    web1, registry = ca.provider("web1", "node"), ca.provider("reg", "client")
    with pytest.raises(ProtocolError, match=message):
        opened(registration.seal(data(**changes), web1), registry)


def test_an_oversized_registration_is_not_read(ca: CA) -> None:
    registry = ca.provider("reg", "client")
    with pytest.raises(ProtocolError, match="over max_message_bytes"):
        registration.open_registration(b"x" * 2000, registry, "orch", max_bytes=1000,
                                       clock_skew=5)


_RANDOM_VERIFIER = CA().provider("reg", "client")


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                     st.dictionaries(st.text(max_size=8), st.text(max_size=8))
                     .map(lambda d: json.dumps({"v": 1, "kind": "reply", **d}).encode())))
def test_whatever_arrives_is_refused_with_an_orch_error(raw: bytes) -> None:
    with pytest.raises(OrchError):
        registration.open_registration(raw, _RANDOM_VERIFIER, "orch", max_bytes=1 << 20,
                                       clock_skew=5)


@pytest.mark.parametrize("section, message", [
    ({"stor": "x"}, "unknown setting 'plugins.inventory.stor' .did you mean 'store'"),
    ({"store": "no-scheme"}, "plugins.inventory.store.*expected a store URL"),
    ({"stale_after": -1}, "number of seconds"),
    ({"stale_after": "soon"}, "number of seconds"),
    ({"job_history": "maybe"}, "plugins.inventory.job_history"),
    ({"registration_jitter": 1.5}, "below 1"),
])
def test_inventory_settings_name_the_bad_key(section: dict[str, Any], message: str) -> None:
    settings = load_settings(overrides={"plugins": {"inventory": section}}, environ={})
    with pytest.raises(ConfigError, match=message):
        InventorySettings.from_settings(settings)


def test_the_sweep_marks_stale_then_expires(tmp_path: Path) -> None:
    settings = load_settings(overrides={
        "broker": "memory://", "security": "insecure",
        "plugins": {"inventory": {"store": f"sqlite:///{tmp_path}/inv.db", "stale_after": 60,
                                  "expire_after": 600}}}, environ={})
    registry = Registry(settings, default_registry(), identity="reg")
    try:
        now = time.time()
        registry.store.upsert_nodes([
            NodeRecord("fresh", "orch", last_seen=now - 10),
            NodeRecord("quiet", "orch", last_seen=now - 120),
            NodeRecord("gone", "orch", last_seen=now - 1200)])
        registry.sweep(now)
        by_name = {r.identity: r.stale for r in registry.store.nodes()}
        assert by_name == {"fresh": False, "quiet": True}
    finally:
        registry.store.close()
        registry.transport.close()


def test_a_registry_needs_a_store() -> None:
    settings = load_settings(overrides={"broker": "memory://", "security": "insecure"},
                             environ={})
    with pytest.raises(ConfigError, match="needs a store"):
        Registry(settings, default_registry())


class _Node:
    """What the registration publisher reads of a node."""

    def __init__(self, security: Any) -> None:
        from types import SimpleNamespace

        self.identity, self.collective, self.security = "web1", "regpub", security
        self._view = SimpleNamespace(facts={"role": "web"}, classes=frozenset({"base"}),
                                     agents=frozenset({"rpcutil"}))

    def view(self) -> Any:
        return self._view

    def statistics(self) -> dict[str, Any]:
        return {"starttime": 100.0}


@pytest.mark.parametrize("service", ["registration", "reply copies"])
def test_server_services_publish_over_the_daemons_connection(
        monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    """Registration and reply copies go out through ``Transport.publish`` (the daemon's
    reply connection): neither opens a client channel — a connection and a reply queue
    per node — of its own."""
    import queue
    import threading
    import uuid

    from orch.core.transport import NodeBinding
    from orch.inventory.publisher import RegistrationPublisher
    from orch.inventory.replycopy import ROUTE as COPY_ROUTE
    from orch.inventory.replycopy import ReplyCopier
    from orch.transports.kombu import KombuTransport

    def no_client(*_: Any) -> None:
        raise AssertionError("a server service opened a client channel")

    monkeypatch.setattr(KombuTransport, "open_client", no_client)
    url = f"memory://regpub-{uuid.uuid4().hex[:8]}/"
    settings = load_settings(overrides={"broker": url, "security": "insecure"})
    node = _Node(default_registry().security_for(settings))
    received: queue.Queue[bytes] = queue.Queue()
    route = registration.ROUTE if service == "registration" else COPY_ROUTE
    registry_side, server_side = KombuTransport([url]), KombuTransport([url])
    stop, ready = threading.Event(), threading.Event()
    consumer = threading.Thread(target=registry_side.serve, daemon=True, args=(
        [NodeBinding(node.collective, "registry-1", (route,), received.put)], stop, ready))
    consumer.start()
    try:
        assert ready.wait(10)
        if service == "registration":
            publisher = RegistrationPublisher(InventorySettings())
            publisher.start(node, server_side, ready)  # type: ignore[arg-type]
            try:
                record = opened_insecure(received.get(timeout=10), node.security)
            finally:
                publisher.stop()
            assert (record.identity, record.facts) == ("web1", {"role": "web"})
            assert publisher.published >= 1
        else:
            copier = ReplyCopier()
            listeners: list[Any] = []
            copier.start(type("N", (), {"services": type("S", (), {  # type: ignore[arg-type]
                "reply_listeners": listeners})})(), server_side, ready)
            try:
                listeners[0](node.collective, b'{"a copy": 1}')
                assert received.get(timeout=10) == b'{"a copy": 1}'
            finally:
                copier.stop()
    finally:
        stop.set()
        consumer.join(10)
        server_side.close()
        registry_side.close()


def opened_insecure(raw: bytes, verifier: Any) -> NodeRecord:
    return registration.open_registration(raw, verifier, "regpub", max_bytes=1 << 20,
                                          clock_skew=5)
