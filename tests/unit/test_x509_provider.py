"""Tests of the x509 security provider: what it accepts, what it rejects and why, and that
verify() raises nothing but SecurityError whatever arrives."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.core.config import Settings
from orch.core.errors import SecurityError
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.core.security import SecurityProvider, Verified
from orch.security import pki
from orch.security import x509 as x509_plugin
from orch.security.x509 import X509Provider

NOW = dt.datetime.now(dt.UTC)


class CA:
    """An in-memory CA that hands out ready providers."""

    def __init__(self, key_type: str = "ed25519", name: str = "test CA") -> None:
        self.cert, self.key = pki.create_ca(name, key_type, rsa_bits=2048)
        self.key_type = key_type

    def credentials(self, name: str, role: str, **kwargs: Any) -> pki.Credentials:
        cert, key = pki.issue_certificate(self.cert, self.key, name, role,
                                          key_type=self.key_type, rsa_bits=2048, **kwargs)
        return pki.Credentials(cert, key, (self.cert,))

    def provider(self, name: str, role: str, **kwargs: Any) -> X509Provider:
        return X509Provider(credentials=self.credentials(name, role, **kwargs), clock_skew=5)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def alice(ca: CA) -> X509Provider:
    return ca.provider("alice", "client")


@pytest.fixture(scope="module")
def web1(ca: CA) -> X509Provider:
    return ca.provider("web1", "node")


def request_body(caller: str = "user=alice") -> str:
    return Request(agent="rpcutil", action="ping", collective="orch", sender="laptop",
                   caller=caller, reply_to="replies.x", data={"n": 1}).encode()


def reply_body(sender: str = "web1") -> str:
    return Reply("abc", sender, "rpcutil", "ping", Status.OK, "OK", {"pong": 1.5}).encode()


def sealed(provider: SecurityProvider, kind: str, body: str) -> Envelope:
    """Seal, then put through the wire encoding exactly as the transport does."""
    return Envelope.decode(Envelope(kind, body, provider.seal(kind, body)).encode())


def rejected(verifier: X509Provider, envelope: Envelope) -> str:
    with pytest.raises(SecurityError) as info:
        verifier.verify(envelope)
    return str(info.value)


# -- good messages ---------------------------------------------------------------------------


def test_seal_carries_the_certificate_and_a_base64_signature(alice: X509Provider) -> None:
    fields = alice.seal("request", request_body())
    assert set(fields) == {"cert", "sig"}
    assert fields["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert len(base64.b64decode(fields["sig"], validate=True)) == 64  # ed25519


def test_good_request_accepted(alice: X509Provider, web1: X509Provider) -> None:
    verified = web1.verify(sealed(alice, "request", request_body()))
    assert verified == Verified(caller="cert=alice",
                                fingerprint=pki.fingerprint(alice.certificate))


def test_good_reply_accepted(alice: X509Provider, web1: X509Provider) -> None:
    verified = alice.verify(sealed(web1, "reply", reply_body("web1")))
    assert verified.caller == "cert=web1"
    assert verified.fingerprint == pki.fingerprint(web1.certificate)


def test_caller_comes_from_the_certificate_not_the_body(alice: X509Provider,
                                                        web1: X509Provider) -> None:
    envelope = sealed(alice, "request", request_body(caller="cert=root"))
    assert web1.verify(envelope).caller == "cert=alice"


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_other_key_types_sign_and_verify(key_type: str) -> None:
    other = CA(key_type)
    client, node = other.provider("alice", "client"), other.provider("web1", "node")
    assert node.verify(sealed(client, "request", request_body())).caller == "cert=alice"
    assert client.verify(sealed(node, "reply", reply_body())).caller == "cert=web1"


# -- rejected messages -----------------------------------------------------------------------


def test_unsigned_request_rejected(web1: X509Provider) -> None:
    message = rejected(web1, Envelope("request", request_body(), {}))
    assert "not signed" in message


def test_request_with_only_a_certificate_or_only_a_signature_rejected(
    alice: X509Provider, web1: X509Provider
) -> None:
    fields = alice.seal("request", request_body())
    assert "no signature" in rejected(
        web1, Envelope("request", request_body(), {"cert": fields["cert"]}))
    assert "no signer certificate" in rejected(
        web1, Envelope("request", request_body(), {"sig": fields["sig"]}))


def test_tampered_request_payload_rejected(alice: X509Provider, web1: X509Provider) -> None:
    good = sealed(alice, "request", request_body())
    tampered = Envelope("request", good.body.replace('"n":1', '"n":2'), good.security)
    assert tampered.body != good.body
    assert "signature does not match the message" in rejected(web1, tampered)


def test_request_body_with_extra_whitespace_rejected(alice: X509Provider,
                                                     web1: X509Provider) -> None:
    good = sealed(alice, "request", request_body())
    reserialised = json.dumps(json.loads(good.body))  # same JSON value, different bytes
    assert "signature does not match" in rejected(
        web1, Envelope("request", reserialised, good.security))


def test_tampered_reply_rejected(alice: X509Provider, web1: X509Provider) -> None:
    good = sealed(web1, "reply", reply_body())
    tampered = Envelope("reply", good.body.replace("1.5", "9.5"), good.security)
    assert "signature does not match the message" in rejected(alice, tampered)


def test_signature_of_another_signer_rejected(ca: CA, alice: X509Provider,
                                              web1: X509Provider) -> None:
    bob = ca.provider("bob", "client")
    body = request_body()
    mixed = Envelope("request", body, {"cert": bob.seal("request", body)["cert"],
                                       "sig": alice.seal("request", body)["sig"]})
    assert "signature does not match" in rejected(web1, mixed)


def test_certificate_from_another_ca_rejected(web1: X509Provider) -> None:
    rogue = CA(name="test CA").provider("bob", "client")  # same CA name, different key
    message = rejected(web1, sealed(rogue, "request", request_body()))
    assert message == "certificate for 'bob' is not issued by the configured CA"
    stranger = CA(name="other CA").provider("carol", "client")
    assert "not issued by the configured CA" in rejected(
        web1, sealed(stranger, "request", request_body()))


def test_expired_certificate_rejected(ca: CA, web1: X509Provider) -> None:
    old = ca.provider("alice", "client", valid_from=NOW - dt.timedelta(days=30),
                      valid_until=NOW - dt.timedelta(days=1))
    message = rejected(web1, sealed(old, "request", request_body()))
    assert message.startswith("certificate 'alice' expired at ")
    assert message.endswith("Z")


def test_not_yet_valid_certificate_rejected(ca: CA, web1: X509Provider) -> None:
    future = ca.provider("alice", "client", valid_from=NOW + dt.timedelta(days=1))
    message = rejected(web1, sealed(future, "request", request_body()))
    assert "certificate 'alice' is not valid before" in message


def test_clock_skew_allowance(ca: CA) -> None:
    creds = ca.credentials("alice", "client", valid_from=NOW - dt.timedelta(days=1),
                           valid_until=NOW - dt.timedelta(seconds=2))
    signer = X509Provider(credentials=creds, clock_skew=3600)
    node = ca.credentials("web1", "node")
    lenient = X509Provider(credentials=node, clock_skew=3600)
    strict = X509Provider(credentials=node, clock_skew=0)
    envelope = sealed(signer, "request", request_body())
    assert lenient.verify(envelope).caller == "cert=alice"
    assert "expired" in rejected(strict, envelope)


def test_expired_ca_rejected() -> None:
    cert, key = pki.create_ca("old CA", valid_from=NOW - dt.timedelta(days=30),
                              valid_until=NOW - dt.timedelta(days=1))
    leaf, leaf_key = pki.issue_certificate(cert, key, "alice", "client",
                                           valid_from=NOW - dt.timedelta(days=2))
    provider = X509Provider(credentials=pki.Credentials(leaf, leaf_key, (cert,)), clock_skew=5)
    assert "the CA 'old CA' that issued certificate 'alice' expired" in rejected(
        provider, sealed(provider, "request", request_body()))


def test_node_certificate_used_as_a_client_rejected(web1: X509Provider) -> None:
    message = rejected(web1, sealed(web1, "request", request_body()))
    assert message == "certificate 'web1' is a node certificate and cannot sign requests"


def test_client_certificate_signing_a_reply_rejected(alice: X509Provider) -> None:
    message = rejected(alice, sealed(alice, "reply", reply_body(sender="alice")))
    assert message == "certificate 'alice' is a client certificate and cannot sign replies"


def test_reply_sender_differs_from_certificate_rejected(ca: CA, alice: X509Provider,
                                                        web1: X509Provider) -> None:
    message = rejected(alice, sealed(web1, "reply", reply_body(sender="db1")))
    assert message == ("reply from 'db1' is signed with the certificate of 'web1'; "
                       "a node may only sign its own replies")


def test_reply_without_sender_rejected(alice: X509Provider, web1: X509Provider) -> None:
    assert "names no sender" in rejected(alice, sealed(web1, "reply", '{"v":1}'))
    assert "not valid JSON" in rejected(alice, sealed(web1, "reply", "not json"))


def test_ca_certificate_cannot_sign(ca: CA, web1: X509Provider) -> None:
    as_ca = X509Provider(credentials=pki.Credentials(ca.cert, ca.key, (ca.cert,)),
                         clock_skew=5)
    assert "is a CA certificate and cannot sign requests" in rejected(
        web1, sealed(as_ca, "request", request_body()))


def test_unmarked_certificate_under_an_orch_ca_rejected(ca: CA, web1: X509Provider) -> None:
    key = pki.generate_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.mcollective")]))
        .issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca.key, None)
    )
    signer = X509Provider(credentials=pki.Credentials(cert, key, (ca.cert,)), clock_skew=5)
    assert "has no orch role" in rejected(web1, sealed(signer, "request", request_body()))


def test_bad_base64_and_junk_certificate_rejected(alice: X509Provider,
                                                  web1: X509Provider) -> None:
    fields = dict(alice.seal("request", request_body()))
    assert "not valid base64" in rejected(
        web1, Envelope("request", request_body(), {**fields, "sig": "%%%"}))
    assert "not a valid PEM certificate" in rejected(
        web1, Envelope("request", request_body(), {**fields, "cert": "junk"}))
    assert "too large" in rejected(
        web1, Envelope("request", request_body(), {**fields, "cert": "x" * 100_000}))


def test_unknown_kind_rejected(alice: X509Provider, web1: X509Provider) -> None:
    envelope = Envelope("notice", request_body(), alice.seal("request", request_body()))
    assert "kind" in rejected(web1, envelope)


def test_body_that_is_not_encodable_rejected(alice: X509Provider, web1: X509Provider) -> None:
    fields = alice.seal("request", request_body())
    assert "not valid text" in rejected(web1, Envelope("request", "\ud800", fields))
    with pytest.raises(SecurityError):
        alice.seal("request", "\ud800")


# -- Puppet CA -------------------------------------------------------------------------------


def _puppet_ssldir(root: Path, certnames: list[str]) -> Path:
    """A Puppet-style ssldir with RSA keys (PKCS#1), an intermediate CA chained with its root
    in certs/ca.pem, and certificates without any orch marker."""
    def cert(subject: str, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey,
             key: rsa.RSAPrivateKey, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, int_key = new_key(), new_key()
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Puppet Root CA: t")])
    root_cert = cert("Puppet Root CA: t", root_name, root_key, root_key, True)
    int_cert = cert("Puppet CA: puppet", root_name, root_key, int_key, True)
    (root / "certs").mkdir(parents=True)
    (root / "private_keys").mkdir()
    (root / "certs" / "ca.pem").write_bytes(
        int_cert.public_bytes(serialization.Encoding.PEM)
        + root_cert.public_bytes(serialization.Encoding.PEM))
    for name in certnames:
        key = new_key()
        leaf = cert(name, int_cert.subject, int_key, key, False)
        (root / "certs" / f"{name}.pem").write_bytes(
            leaf.public_bytes(serialization.Encoding.PEM))
        fd = os.open(root / "private_keys" / f"{name}.pem",
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()))
    return root


@pytest.fixture(scope="module")
def puppet_ssldir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _puppet_ssldir(tmp_path_factory.mktemp("puppet") / "ssl",
                          ["web1.example.com", "alice.mcollective"])


def puppet_provider(ssldir: Path, identity: str) -> X509Provider:
    return X509Provider(Settings().with_values(
        {"identity": identity, "ssldir": str(ssldir), "security": "x509"}, "test"))


def test_puppet_ca_with_rsa_keys_signs_and_verifies(puppet_ssldir: Path) -> None:
    node = puppet_provider(puppet_ssldir, "web1.example.com")
    client = puppet_provider(puppet_ssldir, "alice.mcollective")
    request = sealed(client, "request", request_body())
    assert len(base64.b64decode(request.security["sig"])) == 256  # RSA-2048
    assert node.verify(request).caller == "cert=alice.mcollective"
    reply = sealed(node, "reply", reply_body(sender="web1.example.com"))
    assert client.verify(reply).caller == "cert=web1.example.com"


def test_puppet_node_certificate_cannot_sign_requests(puppet_ssldir: Path) -> None:
    node = puppet_provider(puppet_ssldir, "web1.example.com")
    assert "is a node certificate and cannot sign requests" in rejected(
        node, sealed(node, "request", request_body()))


def test_puppet_client_list_is_configurable(puppet_ssldir: Path) -> None:
    s = Settings().with_values({"identity": "web1.example.com", "ssldir": str(puppet_ssldir)},
                               "test")
    creds = pki.load_credentials(s)
    signer = X509Provider(s, credentials=creds, client_certnames=["web1.*"])
    assert signer.verify(sealed(signer, "request", request_body())).caller == (
        "cert=web1.example.com")


# -- plumbing --------------------------------------------------------------------------------


def test_registered_through_the_hook(tmp_path: Path) -> None:
    assert x509_plugin.orch_security_providers() == {"x509": X509Provider}
    registry = PluginRegistry()
    assert registry.register(x509_plugin, "x509")
    pki.init_ca(tmp_path)
    pki.issue(tmp_path, "web1", "node")
    s = Settings().with_values({
        "security": "x509", "identity": "web1",
        "tls_cert": str(tmp_path / "issued" / "node" / "web1.pem"),
        "tls_key": str(tmp_path / "issued" / "node" / "web1.key"),
        "tls_ca": str(tmp_path / "ca.pem")}, "test")
    provider = registry.security_for(s)
    assert provider.name == "x509"
    assert provider.verify(sealed(provider, "reply", reply_body())).caller == "cert=web1"


def test_identity_that_differs_from_the_node_certificate_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki.init_ca(tmp_path)
    pki.issue(tmp_path, "web1", "node")
    s = Settings().with_values({
        "identity": "web2", "tls_cert": str(tmp_path / "issued" / "node" / "web1.pem"),
        "tls_key": str(tmp_path / "issued" / "node" / "web1.key"),
        "tls_ca": str(tmp_path / "ca.pem")}, "test")
    X509Provider(s)
    assert "clients will reject its replies" in caplog.text


def test_parsed_certificates_are_cached(ca: CA, alice: X509Provider,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = ca.provider("web1", "node")
    calls: list[bytes] = []
    original = verifier._inspect

    def counting(raw: bytes) -> Any:
        calls.append(raw)
        return original(raw)

    monkeypatch.setattr(verifier, "_inspect", counting)
    for _ in range(5):
        verifier.verify(sealed(alice, "request", request_body()))
    assert len(calls) == 1


def test_certificate_cache_is_bounded(ca: CA) -> None:
    creds = ca.credentials("web1", "node")
    verifier = X509Provider(credentials=creds, clock_skew=5, cache_size=3)
    for i in range(6):
        verifier.verify(sealed(ca.provider(f"user{i}", "client"), "request", request_body()))
    assert len(verifier._cache) == 3


# -- any input: only SecurityError -----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def security_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary fields, sometimes with a real certificate or real signature among them."""
    fields: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values,
                                                  max_size=4))
    real = _REAL_FIELDS
    if draw(st.booleans()):
        fields["cert"] = draw(st.sampled_from([real["cert"], real["node_cert"],
                                               real["cert"][:200], real["cert"] + "x"])
                              | json_values)
    if draw(st.booleans()):
        fields["sig"] = draw(st.sampled_from([real["sig"], "", "AAAA", "=="]) | json_values)
    return fields


_REAL_CA = CA()
_REAL_CLIENT = _REAL_CA.provider("alice", "client")
_REAL_NODE = _REAL_CA.provider("web1", "node")
_REAL_FIELDS = {
    **_REAL_CLIENT.seal("request", request_body()),
    "node_cert": _REAL_NODE.seal("reply", reply_body())["cert"],
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["request", "reply", "", "other"]) | st.text(max_size=8),
       body=st.text() | st.sampled_from([request_body(), reply_body(), "\ud800"]),
       fields=security_fields())
def test_verify_raises_only_security_error(kind: str, body: str, fields: dict[str, Any]) -> None:
    for verifier in (_REAL_NODE, _REAL_CLIENT):
        try:
            result = verifier.verify(Envelope(kind, body, fields))
        except SecurityError as exc:
            # every failure has its own reason; the catch-all is never what answers
            assert "could not be verified" not in str(exc)
            continue
        # Anything accepted must really be a correctly signed message.
        assert isinstance(result, Verified)
        assert fields.get("sig") == _REAL_FIELDS["sig"] and body == request_body()


@settings(max_examples=100, deadline=None)
@given(security=json_values, body=json_values)
def test_verify_survives_wrongly_typed_envelopes(security: Any, body: Any) -> None:
    with pytest.raises(SecurityError) as info:
        _REAL_NODE.verify(Envelope("request", body, security))
    assert "could not be verified" not in str(info.value)
