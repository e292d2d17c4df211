"""A command's own credentials remembered (orch.security.owncache): the next command signs and
verifies without importing cryptography, and nothing changed, forged, expired or unusual is
ever taken from the cache."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from x509_support import credential_values, reply_from, request_from

from orch.core import security as core_security
from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.security import owncache, pki, sodium
from orch.security.x509 import X509Provider

pytestmark = pytest.mark.skipif(not sodium.available(), reason="needs PyNaCl")


@pytest.fixture(autouse=True)
def a_command() -> None:
    """These providers are a command's, whatever an earlier test's daemon marked."""
    core_security.mark_long_running(False)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    pki.init_ca(directory, common_name="owncache CA")
    pki.issue(directory, "alice", "client")
    pki.issue(directory, "web1", "node")
    return directory


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def values_for(ca_dir: Path, role: str, name: str, cache: Path, **extra: Any) -> dict[str, Any]:
    return credential_values(ca_dir, role, name, **{"cert_cache": str(cache), **extra})


def settings_for(ca_dir: Path, role: str, name: str, cache: Path, **extra: Any) -> Settings:
    return Settings().with_values(values_for(ca_dir, role, name, cache, **extra), "test")


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.own"))


def test_the_next_command_needs_no_cryptography(ca_dir: Path, cache: Path,
                                                tmp_path: Path) -> None:
    """The first provider derives and remembers; a new process signs with the remembered
    credentials and checks a known node's reply without importing cryptography, and imports
    it only for a certificate it has never seen."""
    alice = X509Provider(settings_for(ca_dir, "client", "alice", cache))
    web1 = X509Provider(settings_for(ca_dir, "node", "web1", cache))
    assert alice.verify(reply_from(web1)).caller == "cert=web1"
    alice.close()  # web1's certificate goes to the trust cache
    assert len(entries(cache)) == 2  # alice's and web1's own credentials

    pki.issue(ca_dir, "web2", "node")
    web2 = X509Provider(settings_for(ca_dir, "node", "web2", cache))
    known = tmp_path / "known.json"
    unknown = tmp_path / "unknown.json"
    known.write_text(reply_from(web1).encode().decode())
    unknown.write_text(reply_from(web2, "web2").encode().decode())
    script = textwrap.dedent(f"""
        import json, sys
        from orch.core.config import Settings
        from orch.core.protocol import Envelope
        from orch.security.x509 import X509Provider
        values = json.loads({json.dumps(json.dumps(values_for(ca_dir, "client", "alice",
                                                                cache)))})
        alice = X509Provider(Settings().with_values(values, "test"))
        sealed = alice.seal("request", "body")
        known = Envelope.decode(open({str(known)!r}, "rb").read())
        caller = alice.verify(known).caller
        before = "cryptography" in sys.modules
        unknown = Envelope.decode(open({str(unknown)!r}, "rb").read())
        print(json.dumps([before, caller, alice.verify(unknown).caller,
                          "cryptography" in sys.modules, sealed["sig"]]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    before, caller, other, after, sig = json.loads(out)
    assert (before, caller, other, after) == (False, "cert=web1", "cert=web2", True)
    # The remembered key signs exactly as the key file does.
    assert sig == alice.seal("request", "body")["sig"]


def test_a_remembered_provider_checks_like_a_derived_one(ca_dir: Path, cache: Path) -> None:
    X509Provider(settings_for(ca_dir, "client", "alice", cache))
    alice = X509Provider(settings_for(ca_dir, "client", "alice", cache))
    assert alice._key is None  # remembered: no cryptography key object
    web1 = X509Provider(settings_for(ca_dir, "node", "web1", cache))
    assert web1.verify(request_from(alice)).caller == "cert=alice"
    with pytest.raises(Exception, match="client certificate and cannot sign replies"):
        web1.verify(reply_from(alice, "alice"))
    assert not alice.isolated
    assert pki.common_name(alice.certificate) == "alice"


def test_changed_files_are_derived_again(ca_dir: Path, cache: Path) -> None:
    settings = settings_for(ca_dir, "client", "alice", cache)
    first = X509Provider(settings)
    pki.issue(ca_dir, "alice", "client", force=True)  # a new key and certificate
    second = X509Provider(settings)
    assert second._key is not None  # derived, not remembered
    assert second.certificate.serial_number != first.certificate.serial_number
    assert X509Provider(settings)._key is None  # and remembered from now on


def test_a_forged_or_damaged_entry_is_ignored(ca_dir: Path, cache: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(ca_dir, "client", "alice", cache)
    X509Provider(settings)
    (entry,) = entries(cache)
    mac, _, payload = entry.read_bytes().partition(b"\n")
    document = json.loads(payload)
    document["snapshot"]["name"] = "mallory"
    entry.write_bytes(mac + b"\n" + json.dumps(document).encode())
    with caplog.at_level(logging.DEBUG, logger="orch.security.owncache"):
        provider = X509Provider(settings)
    assert provider._key is not None and provider._state.own.name == "alice"
    assert "does not authenticate" in caplog.text


def test_nothing_is_used_outside_its_window(ca_dir: Path, cache: Path) -> None:
    settings = settings_for(ca_dir, "client", "alice", cache)
    provider = X509Provider(settings)
    inputs = owncache.read_inputs(settings, None, provider._skew, provider._client_certnames)
    assert inputs is not None
    now = time.time()
    assert owncache.load(cache, inputs, now) is not None
    valid_from, valid_until = owncache.window(provider._state.own, provider._skew)
    assert valid_until <= provider._state.own.not_after - owncache.EXPIRY_WARNING
    assert owncache.load(cache, inputs, valid_until) is None
    assert owncache.load(cache, inputs, valid_from - 1) is None


def test_a_crl_due_for_renewal_ends_the_window(ca_dir: Path, cache: Path) -> None:
    pki.write_crl(ca_dir, days=3)
    settings = settings_for(ca_dir, "client", "alice", cache, tls_crl=str(ca_dir / "crl.pem"))
    provider = X509Provider(settings)
    crl = provider._state.crl
    assert crl.due < time.time() + 3 * 86_400 + 60
    assert owncache.window(provider._state.own, provider._skew)[1] == crl.due
    assert X509Provider(settings)._key is None  # remembered until then
    assert X509Provider(settings)._state.crl == crl


def test_keys_other_than_ed25519_and_a_cache_turned_off_are_never_remembered(
        ca_dir: Path, cache: Path, tmp_path: Path) -> None:
    rsa_ca = tmp_path / "rsa"
    pki.init_ca(rsa_ca, common_name="rsa CA", key_type="rsa")
    pki.issue(rsa_ca, "bob", "client", key_type="rsa")
    X509Provider(settings_for(rsa_ca, "client", "bob", cache))
    X509Provider(settings_for(ca_dir, "client", "alice", cache, cert_cache="off"))
    assert entries(cache) == []


def test_errors_are_the_full_loads_own(ca_dir: Path, cache: Path) -> None:
    """A cache never stands between an operator and the error that says what to fix."""
    X509Provider(settings_for(ca_dir, "client", "alice", cache))
    _, web1_key = pki.CAPaths(ca_dir).issued("node", "web1")
    wrong = settings_for(ca_dir, "client", "alice", cache, tls_key=str(web1_key))
    with pytest.raises(ConfigError, match="does not belong to certificate"):
        X509Provider(wrong)
    missing = settings_for(ca_dir, "client", "alice", cache, tls_cert=str(cache / "none.pem"))
    with pytest.raises(ConfigError, match=r"none\.pem"):
        X509Provider(missing)
