"""The certificate lifecycle (issue 17): the CA's ledger, revocation and the CRL, server
certificates with extra names, renewal, expiry — and the x509 provider honouring a CRL
(from its caches too), reloading its credentials whole, and warning ahead of its expiry."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from x509_support import settings_for

from orch.cli.ca import ca as ca_command
from orch.core.config import Settings
from orch.core.errors import ConfigError, OrchError, RevokedError, SecurityError
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.security import pki
from orch.security.x509 import X509Provider


def signed(provider: X509Provider, kind: str, sender: str = "web1") -> Envelope:
    if kind == "request":
        body = Request(agent="rpcutil", action="ping", collective="orch", sender="laptop",
                       caller="cert=alice", reply_to="replies.x", data={}).encode()
    else:
        body = Reply("abc", sender, "rpcutil", "ping", Status.OK, "OK", {}).encode()
    return Envelope.decode(Envelope(kind, body, provider.seal(kind, body)).encode())


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    pki.init_ca(directory, common_name="lifecycle CA")
    return directory


# -- the CA side ----------------------------------------------------------------------------


def test_replaced_and_revoked_certificates_stay_listed_with_their_state(ca_dir: Path) -> None:
    first = pki.issue(ca_dir, "alice", "client")
    second = pki.issue(ca_dir, "alice", "client", force=True)
    record, crl = pki.revoke(ca_dir, "alice")
    assert record.serial == second.serial and crl.revoked == 1
    states = {(c.serial, c.state) for c in pki.list_issued(ca_dir)}
    assert states == {(first.serial, "replaced"), (second.serial, "revoked")}
    archived = pki.CAPaths(ca_dir).archive / f"{first.serial}.pem"
    assert archived.exists()
    pki.revoke(ca_dir, first.serial.upper())  # by serial, any case
    assert {c.state for c in pki.list_issued(ca_dir)} == {"revoked"}
    with pytest.raises(pki.PKIError, match="already revoked"):
        pki.revoke(ca_dir, first.serial)


def test_crl_lists_every_revoked_serial_with_increasing_numbers(ca_dir: Path) -> None:
    a = pki.issue(ca_dir, "a", "client")
    pki.issue(ca_dir, "b", "node")
    pki.revoke(ca_dir, "a", reason="key-compromise")
    written = pki.write_crl(ca_dir, days=7)
    crl = x509.load_pem_x509_crl(Path(written.path).read_bytes())
    assert written.number == 2
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert [format(r.serial_number, "x") for r in crl] == [a.serial]
    ca_cert, _ = pki.load_ca(ca_dir)
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]


def test_certificates_issued_before_the_ledger_can_be_revoked(ca_dir: Path) -> None:
    info = pki.issue(ca_dir, "old", "node")
    (ca_dir / "index.json").unlink()
    record, _ = pki.revoke(ca_dir, "old")
    assert record.serial == info.serial


def test_damaged_ledger_is_an_error_that_says_what_to_do(ca_dir: Path) -> None:
    (ca_dir / "index.json").write_text("{not json")
    with pytest.raises(pki.PKIError, match="restore it from a backup"):
        pki.issue(ca_dir, "x", "client")


def test_server_certificate_names_and_usage(ca_dir: Path) -> None:
    info = pki.issue(ca_dir, "localhost", "server", sans=["DNS:broker.example", "IP:10.1.2.3"])
    assert info.sans == ("DNS:localhost", "DNS:broker.example", "IP:10.1.2.3", "IP:127.0.0.1",
                         "IP:::1")
    cert = x509.load_pem_x509_certificate(Path(info.cert_path).read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert pki.certificate_role(cert) == "server"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)


@pytest.mark.parametrize("bad", ["10.0.0.1", "IP:300.1.1.1", "URI:http://x", "DNS:", "DNS:a b"])
def test_bad_subject_alternative_names_are_refused(bad: str) -> None:
    with pytest.raises(pki.PKIError):
        pki.parse_sans([bad])


def test_server_certificate_can_sign_neither_requests_nor_replies(ca_dir: Path) -> None:
    pki.issue(ca_dir, "broker", "server")
    pki.issue(ca_dir, "alice", "client")
    pki.issue(ca_dir, "web1", "node")
    broker = X509Provider(settings_for(ca_dir, "server", "broker"))
    web1 = X509Provider(settings_for(ca_dir, "node", "web1"))
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    with pytest.raises(SecurityError, match=r"server .broker. certificate and cannot sign"):
        web1.verify(signed(broker, "request"))
    with pytest.raises(SecurityError, match=r"server .broker. certificate and cannot sign"):
        alice.verify(signed(broker, "reply", sender="broker"))


def test_renew_keeps_role_and_names_and_replaces(ca_dir: Path) -> None:
    old = pki.issue(ca_dir, "web1", "node", sans=["DNS:web1.example"], days=10)
    new = pki.renew(ca_dir, "web1")
    assert new.serial != old.serial and new.fingerprint != old.fingerprint
    assert new.sans == old.sans and new.role == "node"
    assert {(c.serial, c.state) for c in pki.list_issued(ca_dir)} == {
        (new.serial, "valid"), (old.serial, "replaced")}
    with pytest.raises(pki.PKIError, match="no current certificate"):
        pki.renew(ca_dir, "nobody")


def test_expiring_lists_current_certificates_only(ca_dir: Path) -> None:
    soon = pki.issue(ca_dir, "soon", "node", days=10)
    pki.issue(ca_dir, "later", "node", days=100)
    pki.issue(ca_dir, "gone", "client", days=5)
    pki.revoke(ca_dir, "gone")
    assert [c.serial for c in pki.expiring(ca_dir, pki.parse_duration("30d"))] == [soon.serial]
    assert pki.expiring(ca_dir, pki.parse_duration("1d")) == []


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200),
                                               ("2w", 14 * 86400), ("7", 7 * 86400)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert pki.parse_duration(text).total_seconds() == seconds


def test_cli_lifecycle_commands(ca_dir: Path) -> None:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(ca_command, [*args[:1], "--dir", str(ca_dir), *args[1:]])

    result = run("issue", "--server", "localhost", "--san", "IP:10.0.0.9")
    assert result.exit_code == 0, result.output
    assert "IP:127.0.0.1" in result.output and "ssl_options.certfile" in result.output
    assert run("issue", "--client", "bob", "--san", "DNS:x").exit_code == 2
    assert run("issue", "--node", "n", "--san", "BAD").exit_code == 2
    assert run("issue", "--node", "n", "--client", "c").exit_code == 2
    assert run("issue", "--node", "web1", "--days", "5").exit_code == 0
    result = run("list", "--expiring", "30d")
    assert result.exit_code == 1 and "web1" in result.output and "localhost" not in result.output
    assert run("list", "--expiring", "1h").exit_code == 0
    assert run("list", "--expiring", "soon").exit_code == 2
    result = run("revoke", "web1", "--reason", "key-compromise")
    assert result.exit_code == 0 and "Wrote CRL number 1" in result.output
    assert run("revoke", "nobody").exit_code == 1
    result = run("renew", "localhost")
    assert result.exit_code == 0, result.output
    listed = json.loads(run("list", "--json").output)
    assert sorted((c["name"], c["state"]) for c in listed) == [
        ("localhost", "replaced"), ("localhost", "valid"), ("web1", "revoked")]
    assert run("crl").exit_code == 0


# -- the provider side ----------------------------------------------------------------------


def test_revoked_client_is_refused_even_when_cached_on_disk(ca_dir: Path,
                                                            tmp_path: Path) -> None:
    """The certificate cache must not outlive a revocation: an entry learnt before the CRL
    changed is rejected after it."""
    pki.issue(ca_dir, "alice", "client")
    pki.issue(ca_dir, "web1", "node")
    crl_path = Path(pki.write_crl(ca_dir).path)
    cache = tmp_path / "cache"
    node_settings = settings_for(ca_dir, "node", "web1", tls_crl=str(crl_path),
                                 cert_cache=str(cache))
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    request = signed(alice, "request")
    first = X509Provider(node_settings)
    assert first.verify(request).caller == "cert=alice"
    first.close()
    assert list(cache.iterdir())  # learnt and written
    pki.revoke(ca_dir, "alice")
    second = X509Provider(node_settings)
    with pytest.raises(RevokedError, match="revoked") as caught:
        second.verify(request)
    assert caught.value.caller == "cert=alice"
    assert caught.value.fingerprint == next(
        c.fingerprint for c in pki.list_issued(ca_dir) if c.name == "alice")
    # ... and in one process: verified, then revoked, then SIGHUP (reload)
    third = X509Provider(settings_for(ca_dir, "node", "web1", tls_crl=str(crl_path)))
    pki.write_crl(ca_dir)  # still revoked; a new number
    assert third.revocation != first.revocation
    with pytest.raises(RevokedError):
        third.verify(request)


def test_revoked_node_replies_are_rejected_after_reload(ca_dir: Path) -> None:
    pki.issue(ca_dir, "alice", "client")
    pki.issue(ca_dir, "web1", "node")
    crl_path = Path(pki.write_crl(ca_dir).path)
    web1 = X509Provider(settings_for(ca_dir, "node", "web1"))
    alice = X509Provider(settings_for(ca_dir, "client", "alice", tls_crl=str(crl_path)))
    reply = signed(web1, "reply")
    assert alice.verify(reply).caller == "cert=web1"  # now in the memory cache
    pki.revoke(ca_dir, "web1")
    alice.reload()
    with pytest.raises(SecurityError, match=r"web1.*is revoked"):
        alice.verify(reply)


def test_crl_of_another_ca_or_garbage_is_a_config_error(ca_dir: Path, tmp_path: Path) -> None:
    pki.issue(ca_dir, "web1", "node")
    other = tmp_path / "other"
    pki.init_ca(other, common_name="other CA")
    foreign = pki.write_crl(other).path
    with pytest.raises(ConfigError, match="not signed by a trusted CA"):
        X509Provider(settings_for(ca_dir, "node", "web1", tls_crl=foreign))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("nope")
    with pytest.raises(ConfigError, match="is not a PEM or DER CRL"):
        X509Provider(settings_for(ca_dir, "node", "web1", tls_crl=str(garbage)))
    with pytest.raises(ConfigError, match="does not exist"):
        X509Provider(settings_for(ca_dir, "node", "web1", tls_crl=str(tmp_path / "none")))


def test_puppet_chained_crl_file_and_ssldir_default(tmp_path: Path) -> None:
    """Puppet 6+ writes the intermediate's and the root's CRL into one ssl/crl.pem; with
    ssldir set and no tls_crl, it is used as it is."""
    root, root_key = pki.create_ca("Puppet Root CA", "rsa", rsa_bits=2048)
    inter, inter_key = pki.create_ca("Puppet CA: puppet", "rsa", rsa_bits=2048)
    web1, web1_key = pki.issue_certificate(inter, inter_key, "web1", "node", key_type="rsa",
                                           rsa_bits=2048)
    alice, alice_key = pki.issue_certificate(inter, inter_key, "alice.mcollective", "client",
                                             key_type="rsa", rsa_bits=2048)
    ssl = tmp_path / "ssl"
    (ssl / "certs").mkdir(parents=True)
    (ssl / "private_keys").mkdir()
    (ssl / "certs" / "ca.pem").write_bytes(pki.certificate_pem(inter) + pki.certificate_pem(root))
    (ssl / "certs" / "web1.pem").write_bytes(pki.certificate_pem(web1))
    (ssl / "private_keys" / "web1.pem").write_bytes(pki.private_key_pem(web1_key))
    (ssl / "private_keys" / "web1.pem").chmod(0o600)
    now = dt.datetime.now(dt.UTC)
    crls = [pki.revocation.build_crl(inter, inter_key, [(alice.serial_number, now, "")], 3, 5),
            pki.revocation.build_crl(root, root_key, [], 1, 5)]
    (ssl / "crl.pem").write_bytes(b"".join(pki.revocation.crl_pem(c) for c in crls))
    node = X509Provider(Settings().with_values(
        {"identity": "web1", "ssldir": str(ssl), "cert_cache": "off"}, "test"))
    client = X509Provider(credentials=pki.Credentials(alice, alice_key, (inter, root)))
    with pytest.raises(RevokedError, match=r"alice\.mcollective"):
        node.verify(signed(client, "request"))


def test_reload_swaps_certificate_and_keeps_old_one_on_failure(ca_dir: Path) -> None:
    first = pki.issue(ca_dir, "web1", "node")
    pki.issue(ca_dir, "alice", "client")
    web1 = X509Provider(settings_for(ca_dir, "node", "web1"))
    alice = X509Provider(settings_for(ca_dir, "client", "alice"))
    assert alice.verify(signed(web1, "reply")).fingerprint == first.fingerprint
    second = pki.renew(ca_dir, "web1")
    web1.reload()
    assert alice.verify(signed(web1, "reply")).fingerprint == second.fingerprint
    Path(second.key_path or "").write_text("half a key")
    with pytest.raises(ConfigError):
        web1.reload()
    assert alice.verify(signed(web1, "reply")).fingerprint == second.fingerprint


def test_provider_warns_ahead_of_its_own_expiry(ca_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    pki.issue(ca_dir, "web1", "node", days=20)
    with caplog.at_level(logging.WARNING, logger="orch.security.x509"):
        X509Provider(settings_for(ca_dir, "node", "web1"))
    assert "expires at" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="orch.security.x509"):
        X509Provider(settings_for(ca_dir, "node", "web1",
                                  plugins={"x509": {"expiry_warning_days": 30}}))
    assert "this process's certificate 'web1'" in caplog.text
    assert "orch ca renew" in caplog.text
    with pytest.raises(OrchError, match=r"expiry_warning_days.*days"):
        X509Provider(settings_for(ca_dir, "node", "web1",
                                  plugins={"x509": {"expiry_warning_days": "soon"}}))


def test_ca_check_reports_the_crl_and_fails_for_a_revoked_certificate(ca_dir: Path) -> None:
    info = pki.issue(ca_dir, "zed", "client")
    crl = pki.write_crl(ca_dir).path
    args = ["check", "--tls-cert", info.cert_path, "--tls-key", info.key_path or "",
            "--tls-ca", str(ca_dir / "ca.pem"), "--tls-crl", crl, "--json"]
    result = CliRunner().invoke(ca_command, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["revoked"] is False
    pki.revoke(ca_dir, "zed")
    result = CliRunner().invoke(ca_command, args)
    assert result.exit_code == 1 and "is revoked by" in result.output


def test_a_process_whose_own_certificate_is_revoked_says_so(
        ca_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki.issue(ca_dir, "web1", "node")
    _, crl = pki.revoke(ca_dir, "web1")
    with caplog.at_level(logging.ERROR, logger="orch.security.x509"):
        X509Provider(settings_for(ca_dir, "node", "web1", tls_crl=crl.path))
    assert "own certificate 'web1'" in caplog.text and "is revoked" in caplog.text


def test_a_client_uses_its_renewed_certificate_on_its_next_run(
        ca_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every client run loads its credentials afresh; its certificate cache (authenticated
    with its key) starts a new file for the new key instead of warning about the old one."""
    pki.issue(ca_dir, "alice", "client")
    pki.issue(ca_dir, "web1", "node")
    web1 = X509Provider(settings_for(ca_dir, "node", "web1"))
    cache = tmp_path / "cache"
    first = X509Provider(settings_for(ca_dir, "client", "alice", cert_cache=str(cache)))
    first.verify(signed(web1, "reply"))
    first.close()
    renewed = pki.renew(ca_dir, "alice")
    with caplog.at_level(logging.WARNING):
        second = X509Provider(settings_for(ca_dir, "client", "alice", cert_cache=str(cache)))
        second.verify(signed(web1, "reply"))
        second.close()
    assert "authentication code" not in caplog.text
    assert web1.verify(signed(second, "request")).fingerprint == renewed.fingerprint
    assert len(list(cache.glob("*.trust"))) == 2
