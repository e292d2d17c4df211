"""``puppetdb`` discovery: ask PuppetDB which nodes a filter selects.

PuppetDB's query API (``GET /pdb/query/v4?query=<PQL>``) answers with a JSON array of
``{"certname": …}``; the filter is translated by :mod:`orch.discovery.pql`. Settings, in
the ``puppetdb`` plugin section::

    plugins:
      puppetdb:
        url: https://puppetdb.example.com:8081   # required
        # TLS with the client's own certificate (tls_cert / tls_key / tls_ca) by default;
        # these override it for PuppetDB only:
        cert: /etc/orch/puppetdb-client.pem
        key: /etc/orch/puppetdb-client.key
        ca: /etc/puppetlabs/puppet/ssl/certs/ca.pem

The section is declared through ``orch_settings`` (:class:`PuppetDBSettings`), so orch
checks it like its own settings: an unknown key gets "did you mean", a wrong type is a
:class:`~orch.core.errors.ConfigError` naming the key, and ``ORCH_PUPPETDB_URL`` works.

The answer is bounded and checked: the request times out at ``discovery_timeout``, at most
:data:`MAX_BYTES` are read, and every certname must be a valid orch identity; anything
else is an :class:`~orch.core.errors.OrchError`
(:class:`PuppetDBError`) saying what PuppetDB did, never a partial list passed off as complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orch.core import convert
from orch.core.discovery import Discovered
from orch.core.errors import ConfigError, OrchError
from orch.core.hookspecs import hookimpl
from orch.core.protocol import invalid_names
from orch.core.sections import setting
from orch.discovery.pql import to_pql

if TYPE_CHECKING:
    import ssl

    from orch.core.client import Client
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod

log = logging.getLogger(__name__)

#: The most bytes read from one PuppetDB answer (about 500,000 certnames).
MAX_BYTES = 32 * 1024 * 1024
QUERY_PATH = "/pdb/query/v4"


SECTION = "puppetdb"


class PuppetDBError(OrchError):
    """PuppetDB could not be asked, or its answer was not what its API documents."""


def _http_url(value: Any) -> str | None:
    """An ``http://`` or ``https://`` URL, or nothing."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL such as "
                         "https://puppetdb.example.com:8081")
    return value


@dataclass(frozen=True)
class PuppetDBSettings:
    """``plugins: {puppetdb: {…}}``."""

    url: str | None = setting(
        None, _http_url,
        "PuppetDB's address for `--discovery-method puppetdb`, e.g. "
        "`https://puppetdb.example.com:8081`. See [inventory.md](inventory.md#puppetdb-discovery).",
        default_doc="none")
    cert: str | None = setting(
        None, convert.optional_path,
        "Client certificate (PEM) for PuppetDB's HTTPS, instead of `tls_cert`.",
        default_doc="`tls_cert`")
    key: str | None = setting(
        None, convert.optional_path,
        "Its private key (PEM), instead of `tls_key`.", default_doc="`tls_key`")
    ca: str | None = setting(
        None, convert.optional_path,
        "CA bundle (PEM) PuppetDB's certificate is checked against, instead of `tls_ca`.",
        default_doc="`tls_ca`")

    @classmethod
    def from_settings(cls, settings: Settings) -> PuppetDBSettings:
        """The checked section (see :meth:`orch.core.config.Settings.section`)."""
        return settings.section(SECTION, cls)


def _tls_context(client: Client, section: PuppetDBSettings) -> ssl.SSLContext:
    import ssl

    settings = client.settings
    ca = section.ca or settings.tls_ca
    context = ssl.create_default_context(cafile=ca)
    cert = section.cert or settings.tls_cert
    key = section.key or settings.tls_key
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"puppetdb client certificate {cert}: {exc}") from None
    return context


def _unreachable(url: str, reason: object, context: ssl.SSLContext | None,
                 section: PuppetDBSettings, client: Client) -> PuppetDBError:
    """Say what went wrong in words an operator can act on: a TLS failure names the
    certificate (or its absence) and the CA involved, since PuppetDB answers a client
    certificate it does not trust with a bare TLS alert."""
    import ssl

    settings = client.settings
    if isinstance(reason, ssl.SSLCertVerificationError):
        ca = section.ca or settings.tls_ca or "the system's CAs"
        return PuppetDBError(f"PuppetDB at {url}: its certificate is not trusted ("
                             f"{reason.verify_message}; CA {ca}); set plugins.puppetdb.ca "
                             "(or tls_ca) to the CA that signed it (Puppet's CA)")
    alert = getattr(reason, "reason", None) if isinstance(reason, ssl.SSLError) else None
    if isinstance(reason, ssl.SSLEOFError | ConnectionResetError) and context is not None:
        # TLS 1.3: the server checks the client's certificate after the client considers
        # the handshake done; refusing it, it may close before its alert is read.
        alert = f"it closed the connection: {reason}"
    if alert and ("ALERT" in alert or alert.startswith("it closed")) and context is not None:
        # The server's TLS alert (bad/unknown/required certificate), or its closing the
        # connection instead: the client's certificate is what the client can change.
        cert = section.cert or settings.tls_cert
        sent = f"client certificate {cert}" if cert else "no client certificate"
        return PuppetDBError(f"PuppetDB at {url} refused the TLS handshake ({alert}); it "
                             f"needs a client certificate signed by its CA, this client "
                             f"sent {sent} (plugins.puppetdb.cert/key, or tls_cert/tls_key)")
    return PuppetDBError(f"PuppetDB at {url} not reachable: {reason}")


def query(client: Client, pql: str) -> list[str]:
    """The certnames PuppetDB returns for ``pql`` (checked), within discovery_timeout."""
    # Imported here: every command lists the discovery methods, few use this one.
    import urllib.error
    import urllib.parse
    import urllib.request

    section = PuppetDBSettings.from_settings(client.settings)
    url = section.url
    if url is None:
        raise ConfigError("puppetdb discovery needs plugins.puppetdb.url "
                          "(https://puppetdb:8081)")
    target = f"{url.rstrip('/')}{QUERY_PATH}?{urllib.parse.urlencode({'query': pql})}"
    context = _tls_context(client, section) if url.startswith("https://") else None
    request = urllib.request.Request(target, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=client.settings.discovery_timeout,
                                    context=context) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace").strip()
        raise PuppetDBError(f"PuppetDB at {url} refused the query ({exc.code}): "
                            f"{detail or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        # A TLS alert after the handshake (TLS 1.3: the server refusing the client's
        # certificate) is a bare ssl.SSLError, whose own .reason is only the alert name.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise _unreachable(url, reason, context, section, client) from None
    if len(body) > MAX_BYTES:
        raise PuppetDBError(f"PuppetDB answered more than {MAX_BYTES} bytes; not read")
    return _certnames(body, url)


def _certnames(body: bytes, url: str) -> list[str]:
    try:
        rows = json.loads(body)
    except ValueError:
        raise PuppetDBError(f"PuppetDB at {url} answered something that is not JSON") \
            from None
    if not isinstance(rows, list) or not all(
            isinstance(row, dict) and isinstance(row.get("certname"), str) for row in rows):
        raise PuppetDBError(f"PuppetDB at {url} answered JSON that is not a list of "
                            "{\"certname\": …} objects")
    names = sorted({row["certname"] for row in rows})
    bad = invalid_names(names)
    if bad:
        raise PuppetDBError(f"PuppetDB named {bad[0]!r}, which is not a valid node identity "
                            f"({len(bad)} invalid)")
    return names


class PuppetDBDiscovery:
    def discover(self, client: Client, filter: Mapping[str, Sequence[Any]],
                 agent: str) -> Discovered:
        started = time.monotonic()
        if filter:
            client.filters.check(filter)
        found = Discovered(query(client, to_pql(filter, agent)))
        log.info("discovery method=puppetdb nodes=%d seconds=%.4f", len(found),
                 time.monotonic() - started)
        return found


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``puppetdb`` section."""
    return {SECTION: PuppetDBSettings}


@hookimpl
def orch_discovery_methods() -> Mapping[str, DiscoveryMethod]:
    return {"puppetdb": PuppetDBDiscovery()}
