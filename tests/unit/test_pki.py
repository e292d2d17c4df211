"""Tests of orch.security.pki: the CA directory, certificates and their roles, key files,
and loading a process's credentials from tls_* paths or a Puppet ssldir."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.security import pki

NOW = dt.datetime.now(dt.UTC)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def settings(**values: object) -> Settings:
    return Settings().with_values(values, "test")


# -- a Puppet-like CA, built without orch's help ---------------------------------------------


def _puppet_cert(
    subject: str, issuer_name: x509.Name, issuer_key: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey, *, ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_puppet_ssldir(root: Path, certnames: list[str]) -> Path:
    """Mimic Puppet 6+'s ssldir: RSA keys in PKCS#1 PEM, a root and an intermediate CA
    chained in certs/ca.pem, leaf certificates issued by the intermediate, no orch marker."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Puppet Root CA: test")])
    root_cert = _puppet_cert("Puppet Root CA: test", root_name, root_key, root_key, ca=True)
    int_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    int_cert = _puppet_cert("Puppet CA: puppet.example.com", root_name, root_key, int_key,
                            ca=True)
    (root / "certs").mkdir(parents=True)
    (root / "private_keys").mkdir(mode=0o750)
    (root / "certs" / "ca.pem").write_bytes(
        int_cert.public_bytes(serialization.Encoding.PEM)
        + root_cert.public_bytes(serialization.Encoding.PEM))
    for name in certnames:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _puppet_cert(name, int_cert.subject, int_key, key, ca=False)
        (root / "certs" / f"{name}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM))
        key_path = root / "private_keys" / f"{name}.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()))
    return root


# -- in-memory certificates ------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "rsa", "ecdsa"])
def test_create_ca_is_a_marked_ca(key_type: str) -> None:
    cert, key = pki.create_ca("test CA", key_type, rsa_bits=2048)
    assert pki.is_ca_certificate(cert)
    assert pki.certificate_role(cert) == pki.ROLE_CA
    assert pki.common_name(cert) == "test CA"
    assert pki.chains_to(cert, [cert]) is cert
    assert pki.key_type_of(key).startswith(key_type)


def test_issued_certificates_carry_role_san_and_key_usage() -> None:
    ca, ca_key = pki.create_ca()
    node, _ = pki.issue_certificate(ca, ca_key, "web1.example.com", "node")
    client, _ = pki.issue_certificate(ca, ca_key, "alice", "client")
    assert pki.certificate_role(node) == "node"
    assert pki.certificate_role(client) == "client"
    for cert, name in ((node, "web1.example.com"), (client, "alice")):
        assert pki.common_name(cert) == name
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [name]
        assert not pki.is_ca_certificate(cert)
        assert pki.chains_to(cert, [ca]) is ca
        ext = cert.extensions.get_extension_for_oid(pki.ROLE_OID)
        assert ext.critical is False
    node_eku = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    client_eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(node_eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert list(client_eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_validity_days_and_explicit_window() -> None:
    ca, ca_key = pki.create_ca()
    cert, _ = pki.issue_certificate(ca, ca_key, "alice", "client", days=10)
    assert dt.timedelta(days=9) < pki.not_after(cert) - NOW < dt.timedelta(days=11)
    assert pki.not_before(cert) < NOW  # back-dated for clock differences
    start, end = NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2)
    future, _ = pki.issue_certificate(ca, ca_key, "bob", "client", valid_from=start,
                                      valid_until=end)
    assert abs(pki.not_before(future) - start) < dt.timedelta(seconds=1)
    assert abs(pki.not_after(future) - end) < dt.timedelta(seconds=1)
    with pytest.raises(pki.PKIError, match="end after it begins"):
        pki.issue_certificate(ca, ca_key, "carol", "client", valid_from=end, valid_until=start)


def test_issue_certificate_rejects_bad_role_and_name() -> None:
    ca, ca_key = pki.create_ca()
    with pytest.raises(pki.PKIError, match="role"):
        pki.issue_certificate(ca, ca_key, "x", "admin")
    for bad in ("", "../etc", "a/b", ".hidden", "sp ace"):
        with pytest.raises(pki.PKIError, match="not valid"):
            pki.issue_certificate(ca, ca_key, bad, "client")


@pytest.mark.parametrize("key_type", ["ed25519", "rsa", "ecdsa"])
def test_sign_and_verify_signature(key_type: str) -> None:
    key = pki.generate_key(key_type, 2048)
    sig = pki.sign(key, b"exact bytes")
    assert pki.verify_signature(key.public_key(), sig, b"exact bytes")
    assert not pki.verify_signature(key.public_key(), sig, b"exact bytes ")
    assert not pki.verify_signature(key.public_key(), b"junk", b"exact bytes")
    other = pki.generate_key(key_type, 2048)
    assert not pki.verify_signature(other.public_key(), sig, b"exact bytes")
    assert not pki.verify_signature(object(), sig, b"exact bytes")


def test_generate_key_rejects_unknown_types() -> None:
    with pytest.raises(pki.PKIError, match="unknown key type"):
        pki.generate_key("dsa")
    with pytest.raises(pki.PKIError, match="bits"):
        pki.generate_key("rsa", 1024)
    assert isinstance(pki.generate_key(), ed25519.Ed25519PrivateKey)
    assert isinstance(pki.generate_key("ecdsa"), ec.EllipticCurvePrivateKey)


# -- roles -----------------------------------------------------------------------------------


def test_effective_role_under_an_orch_ca() -> None:
    ca, ca_key = pki.create_ca()
    node, _ = pki.issue_certificate(ca, ca_key, "alice.mcollective", "node")
    assert pki.effective_role(node, ca) == "node"  # the marker wins over any name rule
    assert pki.effective_role(ca, ca) == "ca"
    unmarked = _puppet_cert("bob.mcollective", ca.subject, rsa.generate_private_key(
        public_exponent=65537, key_size=2048), rsa.generate_private_key(
        public_exponent=65537, key_size=2048), ca=False)
    assert pki.effective_role(unmarked, ca) is None  # not issued by `orch ca issue`


def test_effective_role_under_a_foreign_ca_uses_the_certname() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Puppet CA")])
    foreign = _puppet_cert("Puppet CA", name, key, key, ca=True)
    client = _puppet_cert("alice.mcollective", name, key, key, ca=False)
    node = _puppet_cert("web1.example.com", name, key, key, ca=False)
    assert pki.effective_role(client, foreign) == "client"
    assert pki.effective_role(node, foreign) == "node"
    assert pki.effective_role(node, foreign, ["web1.*"]) == "client"
    assert pki.effective_role(client, foreign, ["ops-*"]) == "node"


def test_damaged_role_marker_is_an_error_not_an_absence() -> None:
    ca, ca_key = pki.create_ca()
    key = pki.generate_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(pki.ROLE_OID, b"\x0c\x05admin"),
                       critical=False)
        .sign(ca_key, None)
    )
    with pytest.raises(ValueError, match="unknown value"):
        pki.certificate_role(cert)


# -- the CA directory ------------------------------------------------------------------------


def test_init_ca_writes_certificate_and_0600_key(tmp_path: Path) -> None:
    info = pki.init_ca(tmp_path / "ca", common_name="Test CA")
    assert info.name == "Test CA" and info.role == "ca"
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert mode(tmp_path / "ca" / "ca.pem") & 0o077 != 0o077  # readable, never world-writable
    assert mode(tmp_path / "ca") == 0o700
    cert, key = pki.load_ca(tmp_path / "ca")
    assert pki.common_name(cert) == "Test CA"
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem"]


def test_private_keys_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pki.init_ca(tmp_path)
        pki.issue(tmp_path, "alice", "client")
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca.key") == 0o600
    assert mode(tmp_path / "issued" / "client" / "alice.key") == 0o600
    assert mode(tmp_path / "issued" / "client" / "alice.pem") == 0o644
    assert mode(tmp_path / "issued" / "client") == 0o700
    assert mode(tmp_path / "issued") == 0o700


def test_init_ca_refuses_to_overwrite(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(pki.PKIError, match=r"already exists.*--force"):
        pki.init_ca(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == before
    pki.init_ca(tmp_path, force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before
    assert mode(tmp_path / "ca.key") == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_init_ca_refuses_when_only_the_key_is_there(tmp_path: Path) -> None:
    (tmp_path / "ca.key").write_text("something precious")
    with pytest.raises(pki.PKIError, match="already exists"):
        pki.init_ca(tmp_path)
    assert (tmp_path / "ca.key").read_text() == "something precious"


def test_issue_node_and_client(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    node = pki.issue(tmp_path, "web1", "node", days=30)
    client = pki.issue(tmp_path, "alice", "client")
    assert node.cert_path == str(tmp_path / "issued" / "node" / "web1.pem")
    assert node.key_path == str(tmp_path / "issued" / "node" / "web1.key")
    assert client.cert_path == str(tmp_path / "issued" / "client" / "alice.pem")
    assert (node.role, client.role) == ("node", "client")
    ca, _ = pki.load_ca(tmp_path)
    for info in (node, client):
        cert = pki.load_certificate_file(Path(info.cert_path), "cert")
        key = pki.load_private_key_file(Path(info.key_path or ""), "key")
        assert pki.chains_to(cert, [ca]) is ca
        assert pki.verify_signature(cert.public_key(), pki.sign(key, b"m"), b"m")
        assert mode(info.key_path or "") == 0o600
        assert info.fingerprint == pki.fingerprint(cert)


def test_issue_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    first = pki.issue(tmp_path, "alice", "client")
    key_before = Path(first.key_path or "").read_bytes()
    with pytest.raises(pki.PKIError, match=r"already exists.*--force"):
        pki.issue(tmp_path, "alice", "client")
    assert Path(first.key_path or "").read_bytes() == key_before
    second = pki.issue(tmp_path, "alice", "client", force=True)
    assert second.fingerprint != first.fingerprint
    assert Path(second.key_path or "").read_bytes() != key_before
    assert mode(second.key_path or "") == 0o600
    # the same name as a node is a different certificate, not an overwrite
    assert pki.issue(tmp_path, "alice", "node").role == "node"


def test_issue_refuses_when_only_the_key_exists(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    folder = tmp_path / "issued" / "client"
    folder.mkdir(parents=True)
    (folder / "alice.key").write_text("keep me")
    with pytest.raises(pki.PKIError, match="already exists"):
        pki.issue(tmp_path, "alice", "client")
    assert (folder / "alice.key").read_text() == "keep me"
    assert not (folder / "alice.pem").exists()


def test_issue_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(pki.PKIError, match="orch ca init --dir"):
        pki.issue(tmp_path, "alice", "client")


def test_issue_rejects_a_mismatched_ca_key(tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "a")
    pki.init_ca(tmp_path / "b")
    (tmp_path / "a" / "ca.key").unlink()
    os.link(tmp_path / "b" / "ca.key", tmp_path / "a" / "ca.key")
    with pytest.raises(pki.PKIError, match="is not the key of"):
        pki.issue(tmp_path / "a", "alice", "client")


def test_rsa_ca_issues_rsa_certificates(tmp_path: Path) -> None:
    info = pki.init_ca(tmp_path, key_type="rsa", rsa_bits=2048)
    assert info.key_type == "rsa-2048"
    issued = pki.issue(tmp_path, "web1", "node")
    assert issued.key_type == "rsa-2048"  # follows the CA's key type and size
    other = pki.issue(tmp_path, "alice", "client", key_type="ed25519")
    assert other.key_type == "ed25519"
    cert = pki.load_certificate_file(Path(issued.cert_path), "cert")
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


def test_ed25519_ca_is_the_default(tmp_path: Path) -> None:
    assert pki.init_ca(tmp_path).key_type == "ed25519"
    assert pki.issue(tmp_path, "web1", "node").key_type == "ed25519"
    assert pki.issue(tmp_path, "web2", "node", key_type="ecdsa").key_type == "ecdsa-secp256r1"


def test_list_issued(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    assert pki.list_issued(tmp_path) == []
    pki.issue(tmp_path, "web2", "node")
    pki.issue(tmp_path, "web1", "node")
    pki.issue(tmp_path, "alice", "client")
    pki.issue(tmp_path, "old", "client", valid_from=NOW - dt.timedelta(days=10),
              valid_until=NOW - dt.timedelta(days=1))
    listed = pki.list_issued(tmp_path)
    assert [(c.role, c.name) for c in listed] == [
        ("node", "web1"), ("node", "web2"), ("client", "alice"), ("client", "old")]
    by_name = {c.name: c for c in listed}
    assert by_name["old"].expired and not by_name["alice"].expired
    for c in listed:
        assert len(c.fingerprint) == 64 and c.serial and c.not_after.endswith("Z")
        assert c.error is None
    assert '"name": "alice"' in pki.issued_json(listed)


def test_list_issued_reports_broken_files_and_keeps_going(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    pki.issue(tmp_path, "alice", "client")
    (tmp_path / "issued" / "client" / "broken.pem").write_text("not a certificate")
    listed = {c.name: c for c in pki.list_issued(tmp_path)}
    assert listed["broken"].error and "cannot read" in listed["broken"].error
    assert listed["alice"].error is None


def test_list_without_a_ca(tmp_path: Path) -> None:
    with pytest.raises(pki.PKIError, match="no CA"):
        pki.list_issued(tmp_path)


# -- load_credentials ------------------------------------------------------------------------


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "ca")
    pki.issue(tmp_path / "ca", "alice", "client")
    pki.issue(tmp_path / "ca", "web1", "node")
    return tmp_path / "ca"


def tls(ca_dir: Path, role: str, name: str, **extra: object) -> Settings:
    return settings(tls_cert=str(ca_dir / "issued" / role / f"{name}.pem"),
                    tls_key=str(ca_dir / "issued" / role / f"{name}.key"),
                    tls_ca=str(ca_dir / "ca.pem"), **extra)


def test_load_credentials_from_tls_paths(ca_dir: Path) -> None:
    cert, key, anchors = pki.load_credentials(tls(ca_dir, "client", "alice"))
    assert pki.common_name(cert) == "alice"
    assert pki.chains_to(cert, anchors) is not None
    assert pki.verify_signature(cert.public_key(), pki.sign(key, b"x"), b"x")


def test_load_credentials_without_settings_says_what_to_do() -> None:
    with pytest.raises(ConfigError) as info:
        pki.load_credentials(settings(identity="web1"))
    message = str(info.value)
    assert "tls_cert, tls_key, tls_ca" in message
    assert "ssldir" in message and "orch ca issue --dir DIR --node web1" in message


def test_load_credentials_names_the_missing_file(ca_dir: Path) -> None:
    bad = tls(ca_dir, "client", "alice").with_values(
        {"tls_key": str(ca_dir / "nope.key")}, "test")
    with pytest.raises(ConfigError, match=r"private key \(tls_key\) .*nope.key does not exist"
                       r".*orch ca issue"):
        pki.load_credentials(bad)
    bad = tls(ca_dir, "client", "alice").with_values({"tls_ca": str(ca_dir)}, "test")
    with pytest.raises(ConfigError, match="is a directory"):
        pki.load_credentials(bad)


def test_load_credentials_unreadable_key(ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ca_dir / "issued" / "client" / "alice.key"
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # tests may run as root, who reads every file
        if self == key:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigError, match=r"cannot read private key \(tls_key\) .*alice.key: "
                       "permission denied"):
        pki.load_credentials(tls(ca_dir, "client", "alice"))


def test_load_credentials_rejects_garbage_files(ca_dir: Path) -> None:
    junk = ca_dir / "junk.pem"
    junk.write_text("hello")
    for key in ("tls_cert", "tls_key", "tls_ca"):
        bad = tls(ca_dir, "client", "alice").with_values({key: str(junk)}, "test")
        with pytest.raises(ConfigError, match=f"\\({key}\\) .*junk.pem is not a PEM"):
            pki.load_credentials(bad)


def test_load_credentials_rejects_an_encrypted_key(ca_dir: Path) -> None:
    encrypted = ca_dir / "enc.key"
    encrypted.write_bytes(pki.generate_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    bad = tls(ca_dir, "client", "alice").with_values({"tls_key": str(encrypted)}, "test")
    with pytest.raises(ConfigError, match="is encrypted"):
        pki.load_credentials(bad)


def test_load_credentials_rejects_a_key_of_another_certificate(ca_dir: Path) -> None:
    bad = tls(ca_dir, "client", "alice").with_values(
        {"tls_key": str(ca_dir / "issued" / "node" / "web1.key")}, "test")
    with pytest.raises(ConfigError, match="does not belong to certificate"):
        pki.load_credentials(bad)


def test_load_credentials_rejects_a_certificate_of_another_ca(ca_dir: Path,
                                                              tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "other")
    bad = tls(ca_dir, "client", "alice").with_values(
        {"tls_ca": str(tmp_path / "other" / "ca.pem")}, "test")
    with pytest.raises(ConfigError, match="was not issued by the CA"):
        pki.load_credentials(bad)


def test_load_credentials_rejects_an_expired_certificate(ca_dir: Path) -> None:
    pki.issue(ca_dir, "old", "client", valid_from=NOW - dt.timedelta(days=10),
              valid_until=NOW - dt.timedelta(days=1))
    with pytest.raises(ConfigError, match="expired at"):
        pki.load_credentials(tls(ca_dir, "client", "old"))


def test_load_credentials_warns_about_a_certificate_about_to_expire(
    ca_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki.issue(ca_dir, "soon", "client", days=3)
    pki.load_credentials(tls(ca_dir, "client", "soon"))
    assert "expires at" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_puppet_ssldir_with_rsa_keys(tmp_path: Path) -> None:
    ssldir = make_puppet_ssldir(tmp_path / "ssl", ["web1.example.com", "alice.mcollective"])
    cert, key, anchors = pki.load_credentials(
        settings(identity="web1.example.com", ssldir=str(ssldir)))
    assert isinstance(key, rsa.RSAPrivateKey)
    assert pki.common_name(cert) == "web1.example.com"
    assert len(anchors) == 2  # Puppet's chained ca.pem: intermediate + root
    issuer = pki.chains_to(cert, anchors)
    assert issuer is not None and pki.common_name(issuer) == "Puppet CA: puppet.example.com"
    assert pki.effective_role(cert, issuer) == "node"
    client, _, _ = pki.load_credentials(
        settings(identity="alice.mcollective", ssldir=str(ssldir)))
    assert pki.effective_role(client, issuer) == "client"
    assert pki.verify_signature(cert.public_key(), pki.sign(key, b"m"), b"m")


def test_puppet_ssldir_missing_certificate_says_what_to_do(tmp_path: Path) -> None:
    ssldir = make_puppet_ssldir(tmp_path / "ssl", [])
    with pytest.raises(ConfigError) as info:
        pki.load_credentials(settings(identity="db1", ssldir=str(ssldir)))
    message = str(info.value)
    assert str(ssldir / "certs" / "db1.pem") in message
    assert "puppet agent -t" in message and "certname" in message


def test_explicit_tls_paths_override_the_ssldir(tmp_path: Path, ca_dir: Path) -> None:
    ssldir = make_puppet_ssldir(tmp_path / "ssl", ["web1.example.com"])
    s = settings(identity="web1.example.com", ssldir=str(ssldir),
                 tls_ca=str(ssldir / "certs" / "ca.pem"))
    paths = pki.resolve_credential_paths(s)
    assert paths.cert == ssldir / "certs" / "web1.example.com.pem"
    assert paths.key == ssldir / "private_keys" / "web1.example.com.pem"
    assert "overridden" in paths.source
    s = tls(ca_dir, "client", "alice", ssldir=str(ssldir))
    cert, _, _ = pki.load_credentials(s)
    assert pki.common_name(cert) == "alice"
