"""The x509 provider's per-user certificate cache on disk: it saves work in a new process and
never makes an invalid certificate valid (wrong CA, expired, forged or damaged entries, a
directory someone else can write, a sender that is not the certificate's name)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from orch.core.client import Client
from orch.core.config import Settings
from orch.core.errors import SecurityError
from orch.core.protocol import Envelope, Reply, Status
from orch.security import certcache, pki
from orch.security import x509 as x509_plugin
from orch.security.x509 import X509Provider


class CA:
    def __init__(self, name: str = "cache CA") -> None:
        self.cert, self.key = pki.create_ca(name)

    def credentials(self, name: str, role: str, **kwargs: Any) -> pki.Credentials:
        cert, key = pki.issue_certificate(self.cert, self.key, name, role, **kwargs)
        return pki.Credentials(cert, key, (self.cert,))


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def alice(ca: CA) -> pki.Credentials:
    return ca.credentials("alice", "client")


@pytest.fixture(scope="module")
def web1(ca: CA) -> X509Provider:
    return X509Provider(credentials=ca.credentials("web1", "node"))


def verifier(creds: pki.Credentials, cache: Path, **kwargs: Any) -> X509Provider:
    """A provider as a new process would build it, with the disk cache in ``cache``."""
    return X509Provider(credentials=creds, clock_skew=5, cert_cache=cache, **kwargs)


def reply(node: X509Provider, sender: str = "web1") -> Envelope:
    body = Reply("abc", sender, "rpcutil", "ping", Status.OK, "OK", {"pong": 1}).encode()
    return Envelope.decode(Envelope("reply", body, node.seal("reply", body)).encode())


def count_inspections(provider: X509Provider, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    original = provider._inspect

    def counting(raw: bytes) -> Any:
        calls.append(raw)
        return original(raw)

    monkeypatch.setattr(provider, "_inspect", counting)
    return calls


def learn(creds: pki.Credentials, cache: Path, *envelopes: Envelope) -> None:
    """One 'process': verify ``envelopes`` and write what it learnt."""
    first = verifier(creds, cache)
    for envelope in envelopes:
        first.verify(envelope)
    first.close()


def cache_file(cache: Path) -> Path:
    files = list(cache.glob("*.trust"))
    assert len(files) == 1, files
    return files[0]


def stored_entries(cache: Path) -> dict[bytes, list[Any]]:
    """Every entry of the cache file, decoded (key -> the entry's JSON fields)."""
    _, stored = certcache.parse_payload(cache_file(cache).read_bytes().partition(b"\n")[2])
    return {key: json.loads(line.partition(b"\t")[2]) for key, line in stored.items()}


def test_a_new_process_trusts_a_cached_certificate_without_parsing_it(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    assert cache.stat().st_mode & 0o777 == 0o700
    assert cache_file(cache).stat().st_mode & 0o777 == 0o600
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    verified = second.verify(reply(web1))
    assert calls == []
    assert verified.caller == "cert=web1"
    assert verified.fingerprint == pki.fingerprint(web1.certificate)


def test_entry_holds_only_what_the_checks_need(alice: pki.Credentials, web1: X509Provider,
                                               tmp_path: Path) -> None:
    learn(alice, tmp_path / "c", reply(web1))
    (entry,) = stored_entries(tmp_path / "c").values()
    assert entry[:4] == ["web1", "node", pki.fingerprint(web1.certificate), "ed25519"]
    assert b"BEGIN CERTIFICATE" not in cache_file(tmp_path / "c").read_bytes()


def test_a_new_process_decodes_only_the_entries_it_asks_for(
    ca: CA, alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command that talks to one node of a large fleet reads the file but decodes one
    entry; writing what it learnt keeps every entry it never decoded."""
    cache = tmp_path / "cache"
    others = [X509Provider(credentials=ca.credentials(f"web{n}", "node")) for n in (2, 3)]
    learn(alice, cache, reply(web1), *(reply(o, f"web{n}") for n, o in zip((2, 3), others,
                                                                          strict=True)))
    decoded: list[Any] = []
    original = certcache.Entry.from_json.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(certcache.Entry, "from_json",
                        classmethod(lambda cls, value: decoded.append(value)
                                    or original(cls, value)))
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    assert second.verify(reply(web1)).caller == "cert=web1"
    assert calls == [] and [value[0] for value in decoded] == ["web1"]
    assert second._disk is not None and len(second._disk) == 3

    web4 = X509Provider(credentials=ca.credentials("web4", "node"))
    assert second.verify(reply(web4, "web4")).caller == "cert=web4"
    second.close()
    assert sorted(entry[0] for entry in stored_entries(cache).values()) == [
        "web1", "web2", "web3", "web4"]


def test_expired_certificate_not_accepted_from_the_cache(
    ca: CA, alice: pki.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    node = X509Provider(credentials=ca.credentials("web1", "node", valid_until=soon))
    cache = tmp_path / "cache"
    learn(alice, cache, reply(node))
    envelope = reply(node)

    class Later:
        """The x509 module's clock, two hours on."""

        gmtime = staticmethod(time.gmtime)
        strftime = staticmethod(time.strftime)

        @staticmethod
        def time() -> float:
            return soon.timestamp() + 3600

    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    monkeypatch.setattr(x509_plugin, "time", Later)
    with pytest.raises(SecurityError, match="expired"):
        second.verify(envelope)
    assert calls == []  # it came from the cache, and the date check still ran


def test_expired_entries_are_dropped_when_the_cache_is_written(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
) -> None:
    first = verifier(alice, tmp_path / "c")
    first.verify(reply(web1))
    assert first._disk is not None
    assert first._disk.flush(now=time.time() + 400 * 86_400) == 0


def test_certificate_of_another_ca_is_not_accepted_through_the_cache(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    # Another client, trusting another CA, sharing the directory: web1's entry is not its.
    other = CA("other CA")
    stranger = verifier(other.credentials("bob", "client"), cache)
    with pytest.raises(SecurityError, match="not issued by the configured CA"):
        stranger.verify(reply(web1))


def test_scope_covers_the_cas_the_role_patterns_and_the_revocation_state() -> None:
    a, b = b"ca one", b"ca two"
    base = certcache.scope_of([a], ["*.mcollective"])
    assert certcache.scope_of([a], ["*.mcollective"]) == base
    assert certcache.scope_of([a, b], ["*.mcollective"]) != base
    assert certcache.scope_of([b], ["*.mcollective"]) != base
    assert certcache.scope_of([a], ["*.users"]) != base
    assert certcache.scope_of([a], ["*.mcollective"], revocation="crl 7") != base


def test_a_revocation_change_invalidates_the_cache(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    monkeypatch.setattr(X509Provider, "_revocation_state", lambda self, crl: "crl 2")
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    assert len(calls) == 1


def test_a_revoked_certificate_is_rejected_even_from_the_cache(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    serial = format(web1.certificate.serial_number, "x")
    monkeypatch.setattr(X509Provider, "_revoked",
                        lambda self, info: "revoked" if info.serial == serial else None)
    with pytest.raises(SecurityError, match="revoked"):
        verifier(alice, cache).verify(reply(web1))


def test_tampered_cache_file_is_ignored(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    path = cache_file(cache)
    path.write_bytes(path.read_bytes().replace(b'"web1"', b'"web2"'))
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    assert second.verify(reply(web1)).caller == "cert=web1"
    assert len(calls) == 1
    assert "authentication code does not match" in caplog.text


def test_forged_entry_for_an_attackers_key_is_not_trusted(
    ca: CA, alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
) -> None:
    """Someone who can write the file but not read the key: a well-formed entry that binds
    web1's certificate to the attacker's key, with a code computed without the key."""
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    path = cache_file(cache)
    mac, _, payload = path.read_bytes().partition(b"\n")
    header, stored = certcache.parse_payload(payload)
    mallory = X509Provider(credentials=ca.credentials("mallory", "node"))
    ((key, line),) = stored.items()
    not_after, _, fields = line.partition(b"\t")
    entry = json.loads(fields)
    entry[4] = _raw_public_b64(mallory.certificate)
    forged_payload = certcache.build_payload(
        header, {key: not_after + b"\t" + json.dumps(entry).encode()})
    genuine = reply(web1)
    forged = Envelope("reply", genuine.body, {"cert": genuine.security["cert"],
                                              "sig": mallory.seal("reply", genuine.body)["sig"]})
    for forged_mac in (mac, b"0" * 64):
        path.write_bytes(forged_mac + b"\n" + forged_payload)
        with pytest.raises(SecurityError, match="signature does not match"):
            verifier(alice, cache).verify(forged)


def _raw_public_b64(cert: Any) -> str:
    import base64

    from cryptography.hazmat.primitives import serialization

    return base64.b64encode(cert.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def test_cache_written_with_another_key_is_not_trusted(
    ca: CA, alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    # Same certificate and CA, another private key: its code cannot match.
    _, other_key = pki.issue_certificate(ca.cert, ca.key, "alice", "client")
    second = verifier(pki.Credentials(alice.certificate, other_key, alice.ca), cache)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    assert len(calls) == 1


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o750, 0o705])
def test_cache_directory_open_to_others_is_not_used(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path, mode: int,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    cache.chmod(mode)
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    assert len(calls) == 1
    assert "certificate cache not used" in caplog.text
    assert "mode 0" in caplog.text


def test_cache_directory_of_another_user_is_not_used(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    if os.geteuid() == 0:
        os.chown(cache, 65534, 65534)
    else:  # not root: pretend to be someone else instead of giving the directory away
        uid = os.geteuid() + 1
        monkeypatch.setattr(certcache.os, "geteuid", lambda: uid)
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    second.close()
    assert len(calls) == 1
    assert "owned by uid" in caplog.text


def test_cache_file_open_to_others_or_a_symlink_is_not_used(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    path = cache_file(cache)
    path.chmod(0o644)
    second = verifier(alice, cache)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    assert len(calls) == 1
    path.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    third = verifier(alice, cache)
    calls = count_inspections(third, monkeypatch)
    third.verify(reply(web1))
    assert len(calls) == 1


def test_symlinked_cache_directory_is_not_used(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tmp_path / "real"
    learn(alice, real, reply(web1))
    link = tmp_path / "link"
    link.symlink_to(real)
    second = verifier(alice, link)
    calls = count_inspections(second, monkeypatch)
    second.verify(reply(web1))
    second.close()
    assert len(calls) == 1


def test_identity_mismatch_is_still_rejected_with_a_cached_certificate(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    learn(alice, cache, reply(web1))
    second = verifier(alice, cache)
    lying = reply(web1, sender="db1")
    with pytest.raises(SecurityError, match="a node may only sign its own replies"):
        second.verify(lying)
    with pytest.raises(SecurityError, match="a node may only sign its own replies"):
        second.verify_reply(lying, "db1")


def test_unusable_cache_directory_costs_nothing_but_speed(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    provider = verifier(alice, blocker / "cache")
    assert provider.verify(reply(web1)).caller == "cert=web1"
    provider.close()


def test_settings_choose_the_cache_directory(alice: pki.Credentials, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paths = {}
    for name, data in (("cert", pki.certificate_pem(alice.certificate)),
                       ("key", pki.private_key_pem(alice.key)),
                       ("ca", pki.certificate_pem(alice.ca[0]))):
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    base = Settings().with_values({"tls_cert": str(paths["cert"]), "tls_key": str(paths["key"]),
                                   "tls_ca": str(paths["ca"])}, "test")
    chosen = X509Provider(base.with_values({"cert_cache": str(tmp_path / "c")}, "test"))
    assert chosen._disk is not None and chosen._disk.directory == tmp_path / "c"
    assert X509Provider(base.with_values({"cert_cache": "off"}, "test"))._disk is None
    monkeypatch.delenv("ORCH_CACHE_DIR", raising=False)  # it would win over XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = X509Provider(base)
    assert default._disk is not None
    assert default._disk.directory == tmp_path / "xdg" / "orch" / "x509"
    # Built from credentials alone (tests, the demo): nothing on disk.
    assert X509Provider(credentials=alice)._disk is None


def test_client_decodes_each_reply_once_and_writes_the_cache_on_close(
    alice: pki.Credentials, web1: X509Provider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    from orch.core.plugins import default_registry
    from orch.core.protocol import Request

    caplog.set_level(logging.WARNING)
    settings = Settings().with_values({"broker": "memory://", "security": "insecure"}, "t")
    client = Client(settings, default_registry())
    client.security = verifier(alice, tmp_path / "cache")
    request = Request(agent="rpcutil", action="ping", collective="orch", sender="x",
                      caller="cert=alice", reply_to="r")
    body = Reply(request.id, "web1", "rpcutil", "ping", Status.OK, "OK", {}).encode()
    raw = Envelope("reply", body, web1.seal("reply", body)).encode()

    def no_second_decoding(_: str) -> str:
        raise AssertionError("the reply body was decoded a second time")

    monkeypatch.setattr(x509_plugin, "_reply_sender", no_second_decoding)
    from orch.core.client import CallResult

    result = CallResult("rpcutil", "ping", request.id, ["web1"])
    accepted = client._accept(raw, request, result)
    assert accepted is not None and accepted.sender == "web1", result.rejected
    client.close()
    assert len(list((tmp_path / "cache").glob("*.trust"))) == 1


def test_client_reports_a_forged_reply_that_does_not_decode_as_forged(
    alice: pki.Credentials, web1: X509Provider,
) -> None:
    """The body is decoded first only to learn its sender; an unsigned or forged body that
    also fails to decode is still reported by the security check, as before."""
    from orch.core.client import CallResult
    from orch.core.plugins import default_registry
    from orch.core.protocol import Request

    settings = Settings().with_values({"broker": "memory://", "security": "insecure"}, "t")
    client = Client(settings, default_registry())
    client.security = X509Provider(credentials=alice)
    request = Request(agent="rpcutil", action="ping", collective="orch", sender="x",
                      caller="cert=alice", reply_to="r")
    result = CallResult("rpcutil", "ping", request.id, ["web1"])
    for security in ({}, web1.seal("reply", "{}")):
        raw = Envelope("reply", '{"v": 1, "sender": 3}', security).encode()
        assert client._accept(raw, request, result) is None
    assert "not signed" in result.rejected[0]
    assert "signature does not match" in result.rejected[1]
    client.close()


def test_certificates_verified_in_checker_processes_reach_the_disk_cache(
    ca: CA, alice: pki.Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog is verified in forked worker processes; what they learnt is carried back
    and written by the client's own process when it closes."""
    from collections import deque

    from orch.core import checkpool

    monkeypatch.setattr(checkpool, "POOL_BACKLOG", 1)  # the pool at once, not after 64

    from orch.core.plugins import default_registry
    from orch.core.protocol import Request

    request = Request(agent="rpcutil", action="ping", collective="orch", sender="x",
                      caller="cert=alice", reply_to="r")
    names = [f"node{i}" for i in range(40)]
    raws = []
    for name in names:
        node = X509Provider(credentials=ca.credentials(name, "node"))
        body = Reply(request.id, name, "rpcutil", "ping", Status.OK, "OK", {}).encode()
        raws.append(Envelope("reply", body, node.seal("reply", body)).encode())

    class Backlog:
        reply_to = "r"
        messages = deque(raws)

        def receive(self, timeout: float) -> bytes | None:
            return self.messages.popleft() if self.messages else None

        def close(self) -> None: ...

    settings = Settings().with_values({"broker": "memory://", "security": "insecure"}, "t")
    client = Client(settings, default_registry())
    client.security = verifier(alice, tmp_path / "cache")
    client.verify_workers = 2
    client._channel = Backlog()  # type: ignore[assignment]
    result = client.collect(request, names, timeout=30)
    assert client._checked is not None and client._checked.pooled
    client.close()
    assert sorted(result.replies) == sorted(names), result.rejected
    assert sorted(entry[0] for entry in stored_entries(tmp_path / "cache").values()) == sorted(
        names)
