"""The x509 provider of a daemon (orch.security.isolated): credentials, CRL and never-seen
certificates handled in forked children, signing and verifying with libsodium — with every
check giving exactly what the in-process provider gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from x509_support import reply_from, request_from, settings_for

from orch.core import forked
from orch.core import security as core_security
from orch.core.errors import ConfigError, RevokedError, SecurityError
from orch.core.protocol import Envelope
from orch.security import pki, sodium
from orch.security.x509 import DEFAULT_CLIENT_CERTNAMES, X509Provider

pytestmark = pytest.mark.skipif(not forked.available() or not sodium.available(),
                                reason="needs fork and PyNaCl")


@pytest.fixture
def daemon_mode() -> None:
    core_security.mark_long_running()  # the root conftest takes it back after the test


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    pki.init_ca(directory, common_name="isolated CA")
    return directory


def test_sodium_signs_exactly_as_cryptography() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    sign, public = sodium.signer(seed)
    assert public == key.public_key().public_bytes_raw()
    for data in (b"", b"orch", bytes(range(256)) * 40):
        assert sign(data) == key.sign(data)
        assert sodium.verify(public, sign(data), data)
        assert not sodium.verify(public, sign(data)[:63], data)
        assert not sodium.verify(public, sign(data), data + b"x")


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=2000), st.binary(min_size=64, max_size=64))
def test_sodium_agrees_with_cryptography_on_any_signature(data: bytes, sig: bytes) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b"k" * 32)
    public = key.public_key().public_bytes_raw()
    for candidate in (sig, key.sign(data)):
        try:
            key.public_key().verify(candidate, data)
            expected = True
        except Exception:
            expected = False
        assert sodium.verify(public, candidate, data) is expected


def test_forked_returns_raises_and_times_out() -> None:
    assert forked.run(sum, [1, 2, 3]) == 6
    with pytest.raises(ConfigError, match="broken"):
        forked.run(_raise_config_error)
    with pytest.raises(forked.ForkError, match="in time"):
        forked.run(_sleep, timeout=0.2)
    with pytest.raises(forked.ForkError, match="no usable answer"):
        forked.run(os._exit, 0)


def _raise_config_error() -> None:
    raise ConfigError("broken")


def _sleep() -> None:
    import time

    time.sleep(30)


def test_client_certnames_default_is_pkis() -> None:
    assert tuple(pki.DEFAULT_CLIENT_CERTNAMES) == DEFAULT_CLIENT_CERTNAMES


def test_daemon_provider_is_isolated_and_checks_like_the_in_process_one(
        ca_dir: Path, daemon_mode: None) -> None:
    pki.issue(ca_dir, "web1", "node")
    pki.issue(ca_dir, "alice", "client")
    pki.issue(ca_dir, "web2", "node")
    node = X509Provider(settings_for(ca_dir, "node", "web1"))
    assert node.isolated
    core_security.mark_long_running(False)
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    web2 = X509Provider(settings_for(ca_dir, "node", "web2"))
    assert not alice.isolated

    verified = node.verify(request_from(alice))  # a cache miss, checked in a child
    assert verified.caller == "cert=alice"
    assert verified.fingerprint == pki.fingerprint(alice.certificate)
    assert node.verify(request_from(alice)) == verified  # from the cache
    with pytest.raises(SecurityError, match="node certificate and cannot sign requests"):
        node.verify(request_from(web2))
    with pytest.raises(SecurityError, match="node certificate and cannot sign requests"):
        node.verify(request_from(web2))  # the cached verdict
    tampered = request_from(alice)
    tampered = Envelope(tampered.kind, tampered.body.replace("ping", "pong"),
                        tampered.security)
    with pytest.raises(SecurityError, match="signature does not match"):
        node.verify(tampered)
    # What the isolated node signs, the in-process client verifies (and the reverse).
    assert alice.verify(reply_from(node)).caller == "cert=web1"
    assert pki.common_name(node.certificate) == "web1"  # parsed on demand


def test_isolated_daemon_refuses_revoked_certificates_after_reload(
        ca_dir: Path, daemon_mode: None) -> None:
    pki.issue(ca_dir, "web1", "node")
    pki.issue(ca_dir, "alice", "client")
    crl_path = ca_dir / "crl.pem"
    pki.write_crl(ca_dir)
    node_settings = settings_for(ca_dir, "node", "web1", tls_crl=str(crl_path))
    node = X509Provider(node_settings)
    core_security.mark_long_running(False)
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    assert node.verify(request_from(alice)).caller == "cert=alice"
    pki.revoke(ca_dir, "alice")
    node.reload(node_settings)
    assert node.isolated
    with pytest.raises(RevokedError, match="is revoked"):
        node.verify(request_from(alice))


def test_isolated_load_failure_keeps_the_old_credentials(
        ca_dir: Path, daemon_mode: None, tmp_path: Path) -> None:
    pki.issue(ca_dir, "web1", "node")
    node_settings = settings_for(ca_dir, "node", "web1")
    node = X509Provider(node_settings)
    broken = node_settings.with_values({"tls_cert": str(tmp_path / "missing.pem")}, "test")
    with pytest.raises(ConfigError):
        node.reload(broken)
    core_security.mark_long_running(False)
    pki.issue(ca_dir, "alice", "client")
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    assert alice.verify(reply_from(node)).caller == "cert=web1"


def test_signature_memo_keeps_successes_only_and_compares_every_byte() -> None:
    from orch.security.peercerts import CertInfo, SignatureMemo

    calls: list[tuple[bytes, bytes]] = []

    def check(signature: bytes, data: bytes) -> bool:
        calls.append((signature, data))
        return signature == b"good"

    memo = SignatureMemo(size=2, max_data=100)
    info = CertInfo("web1", check=check, fingerprint="f1")
    assert memo.valid(info, "auto", b"good", b"body")
    assert memo.valid(info, "auto", b"good", b"body")  # remembered
    assert len(calls) == 1
    assert not memo.valid(info, "auto", b"bad", b"body")
    assert not memo.valid(info, "auto", b"bad", b"body")  # failures are checked each time
    assert memo.valid(info, "auto", b"good", b"bodx")  # other data: checked
    other = CertInfo("web2", check=lambda s, d: False, fingerprint="f2")
    assert not memo.valid(other, "auto", b"good", b"body")  # another key never shares
    assert not memo.valid(CertInfo("x", check=None, fingerprint="f1"), "auto", b"good", b"body")
    assert memo.valid(info, "auto", b"good", b"b" * 101)  # too large to keep: checked
    assert memo.valid(info, "auto", b"good", b"b" * 101)
    assert calls[-2:] == [(b"good", b"b" * 101)] * 2
