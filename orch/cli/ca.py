"""``orch ca``: create a certificate authority, issue node and client certificates, list them,
and check the credentials a process would load.

The library behind it is :mod:`orch.security.pki`; this module only parses options, prints,
and turns every orch error into a one-line click error (never a traceback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from orch.cli.context import registry as cli_registry
from orch.core.errors import OrchError
from orch.core.hookspecs import hookimpl

F = TypeVar("F", bound=Callable[..., Any])

_KEY_TYPES = ("ed25519", "rsa", "ecdsa")


def _dir_option(command: F) -> F:
    return click.option(
        "--dir", "directory", required=True, envvar="ORCH_CA_DIR", metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="The CA directory (ca.pem, ca.key, issued/) [env ORCH_CA_DIR].",
    )(command)


def _key_options(default: str | None) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        command = click.option(
            "--rsa-bits", type=click.Choice(["2048", "3072", "4096"]), default=None,
            help="RSA key size (default 3072, or the CA's size when issuing).")(command)
        help_text = ("Key algorithm (default: ed25519)." if default else
                     "Key algorithm (default: the CA's own).")
        return click.option("--key-type", type=click.Choice(_KEY_TYPES), default=default,
                            help=help_text)(command)
    return decorate


def _fail(exc: OrchError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ca() -> None:
    """Create a certificate authority and issue node and client certificates.

    \b
    orch ca init   --dir /etc/orch/ca               create the CA (ed25519)
    orch ca issue  --dir /etc/orch/ca --node web1   a certificate for server web1
    orch ca issue  --dir /etc/orch/ca --client alice  a certificate for user alice
    orch ca issue  --dir /etc/orch/ca --server localhost --san IP:10.0.0.5  the broker's
    orch ca list   --dir /etc/orch/ca [--expiring 30d]  what was issued, and its state
    orch ca renew  --dir /etc/orch/ca web1          a new certificate for web1
    orch ca revoke --dir /etc/orch/ca alice         revoke, and rewrite DIR/crl.pem
    orch ca crl    --dir /etc/orch/ca               rewrite DIR/crl.pem

    A Puppet-managed fleet can skip all this and adopt the Puppet CA: set ssldir (see
    docs/security.md), then check the result with `orch ca check`.
    """


@ca.command()
@_dir_option
@_key_options("ed25519")
@click.option("--days", type=click.IntRange(min=1), default=3650, show_default=True,
              help="How long the CA certificate is valid.")
@click.option("--name", "common_name", metavar="NAME",
              help="The CA's common name (default: 'orch CA <host> <date>').")
@click.option("--force", is_flag=True,
              help="Replace an existing CA (every certificate it issued stops working).")
def init(directory: Path, key_type: str, rsa_bits: str | None, days: int,
         common_name: str | None, force: bool) -> None:
    """Create a CA in DIR: ca.pem (certificate) and ca.key (private key, mode 0600)."""
    from orch.security import pki

    try:
        info = pki.init_ca(directory, common_name=common_name, key_type=key_type,
                           rsa_bits=int(rsa_bits or pki.DEFAULT_RSA_BITS), days=days,
                           force=force)
    except OrchError as exc:
        raise _fail(exc) from None
    root = directory.resolve()
    click.echo(f"Created CA {info.name!r} ({info.key_type}), valid until {info.not_after}")
    click.echo(f"  certificate: {root / 'ca.pem'}   (give this to every node and client)")
    click.echo(f"  private key: {root / 'ca.key'}   (mode 0600; keep it off the fleet)")
    click.echo(f"  fingerprint: sha256 {info.fingerprint}")
    click.echo("\nNext: issue certificates")
    click.echo(f"  orch ca issue --dir {directory} --node NODE_NAME")
    click.echo(f"  orch ca issue --dir {directory} --client USER_NAME")


def _usage_lines(role: str, name: str, cert: str, key: str, ca_pem: str) -> Iterable[str]:
    if role == "server":
        yield "Use it for the broker's TLS listener, e.g. in rabbitmq.conf:"
        yield f"  ssl_options.cacertfile = {ca_pem}"
        yield f"  ssl_options.certfile   = {cert}"
        yield f"  ssl_options.keyfile    = {key}"
        yield "(see docs/security.md for the whole broker configuration)"
        return
    flags = (f"--security x509 --tls-cert {cert} --tls-key {key} --tls-ca {ca_pem}")
    if role == "node":
        yield "Run the node daemon with:"
        yield f"  orch server --identity {name} {flags}"
    else:
        yield "Use it on client commands with:"
        yield f"  orch ping {flags}"
    yield "or put in the config file (--config FILE):"
    yield "  security: x509"
    if role == "node":
        yield f"  identity: {name}"
    yield f"  tls_cert: {cert}"
    yield f"  tls_key: {key}"
    yield f"  tls_ca: {ca_pem}"


@ca.command()
@_dir_option
@click.option("--node", metavar="NAME", help="Issue a node (server) certificate for NAME.")
@click.option("--client", metavar="NAME", help="Issue a client (user) certificate for NAME.")
@click.option("--server", metavar="NAME",
              help="Issue a server (broker) certificate for host NAME: TLS only, it can "
                   "never sign requests or replies.")
@click.option("--san", "sans", metavar="DNS:NAME|IP:ADDR", multiple=True,
              help="An extra subjectAltName (repeat it), for --server and --node; "
                   "--server localhost adds IP:127.0.0.1 and IP:::1 itself.")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True,
              help="How long the certificate is valid.")
@_key_options(None)
@click.option("--force", is_flag=True,
              help="Replace an existing certificate of that name (the old one is kept in "
                   "the list as 'replaced' and stays valid until it expires or is revoked).")
def issue(directory: Path, node: str | None, client: str | None, server: str | None,
          sans: tuple[str, ...], days: int, key_type: str | None, rsa_bits: str | None,
          force: bool) -> None:
    """Issue a node, client or server certificate, signed by the CA in DIR.

    Writes DIR/issued/<node|client|server>/NAME.pem and NAME.key (mode 0600) and prints the
    flags and config keys that use them. A node certificate can never sign requests, a
    client certificate can never sign replies, and a server certificate can sign neither.
    The name of a node certificate must be the node's identity.
    """
    from orch.core.protocol import valid_name
    from orch.security import pki

    given = [(r, v) for r, v in (("node", node), ("client", client), ("server", server))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --node NAME, --client NAME or "
                               "--server NAME")
    role, name = given[0]
    if not valid_name(name):
        raise click.BadParameter(
            f"{name!r} is not a valid name: use letters, digits, '.', '_' and '-'",
            param_hint=f"--{role}")
    if sans and role == "client":
        raise click.UsageError("--san is for --server and --node certificates: a client "
                               "certificate names a user, not a host")
    try:
        pki.parse_sans(sans)
    except OrchError as exc:
        raise click.BadParameter(str(exc), param_hint="--san") from None
    try:
        info = pki.issue(directory, name, role, days=days, key_type=key_type,
                         rsa_bits=int(rsa_bits) if rsa_bits else None, force=force,
                         sans=sans)
    except OrchError as exc:
        raise _fail(exc) from None
    _print_issued(directory, role, name, info)


def _print_issued(directory: Path, role: str, name: str, info: Any) -> None:
    cert = os.path.abspath(info.cert_path)
    key = os.path.abspath(info.key_path or "")
    ca_pem = str((directory / "ca.pem").resolve())
    click.echo(f"Issued {role} certificate {name!r} ({info.key_type}), serial {info.serial}, "
               f"valid until {info.not_after}")
    click.echo(f"  certificate: {cert}")
    click.echo(f"  private key: {key}   (mode 0600; copy it with the same protection)")
    click.echo(f"  fingerprint: sha256 {info.fingerprint}")
    if len(info.sans) > 1 or role == "server":
        click.echo(f"  names:       {', '.join(info.sans)}")
    click.echo("")
    for line in _usage_lines(role, name, cert, key, ca_pem):
        click.echo(line)


@ca.command("list")
@_dir_option
@click.option("--expiring", metavar="DURATION",
              help="Only current certificates expiring within DURATION (30d, 12h, 2w) or "
                   "already expired; exit status 1 when there is any (for cron/monitoring).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_(directory: Path, expiring: str | None, as_json: bool) -> None:
    """List the certificates issued from the CA in DIR: role, name, state, expiry, serial,
    fingerprint — replaced and revoked ones included."""
    from orch.security import pki

    try:
        if expiring is not None:
            try:
                window = pki.parse_duration(expiring)
            except OrchError as exc:
                raise click.BadParameter(str(exc), param_hint="--expiring") from None
            issued = pki.expiring(directory, window)
        else:
            issued = pki.list_issued(directory)
    except OrchError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(pki.issued_json(issued))
    elif not issued and expiring is not None:
        click.echo(f"No certificate from {directory} expires within {expiring}.")
    elif not issued:
        click.echo(f"No certificates issued from {directory} yet; "
                   f"run `orch ca issue --dir {directory} --node NAME` or `--client NAME`.")
    else:
        _print_table(issued)
    if expiring is not None and issued:
        raise SystemExit(1)


def _print_table(issued: list[Any]) -> None:
    width = max(len(c.name) for c in issued)
    click.echo(f"{'ROLE':<8} {'NAME':<{width}} {'STATE':<9} {'NOT AFTER':<21} {'SERIAL':<40} "
               "FINGERPRINT (SHA-256)")
    for c in issued:
        if c.error:
            click.echo(f"{c.role:<8} {c.name:<{width}} {c.error}")
            continue
        expired = " (expired)" if c.expired else ""
        click.echo(f"{c.role:<8} {c.name:<{width}} {c.state:<9} {c.not_after:<21} "
                   f"{c.serial:<40} {c.fingerprint}{expired}")


def _role_option(command: F) -> F:
    for role in ("server", "client", "node"):
        command = click.option(f"--{role}", "role", flag_value=role,
                               help=f"NAME is a {role} certificate (when several roles "
                                    "share the name).")(command)
    return command


@ca.command()
@_dir_option
@click.argument("name_or_serial", metavar="NAME|SERIAL")
@_role_option
@click.option("--reason", type=click.Choice(["unspecified", "key-compromise", "superseded",
                                             "cessation-of-operation",
                                             "affiliation-changed"]),
              default="unspecified", show_default=True, help="Why (written in the CRL).")
@click.option("--crl-days", type=click.IntRange(min=1), default=30, show_default=True,
              help="How long the rewritten CRL is announced as current.")
def revoke(directory: Path, name_or_serial: str, role: str | None, reason: str,
           crl_days: int) -> None:
    """Revoke a certificate (a name's current one, or any by serial) and rewrite DIR/crl.pem.

    Nodes refuse the requests of a revoked client, and clients the replies of a revoked
    node, once they read the new CRL: copy DIR/crl.pem to every host's tls_crl path, then
    SIGHUP the daemons (clients read it on their next run). At the broker, delete the
    user (rabbitmqctl delete_user NAME) to cut its connections too.
    """
    from orch.security import pki

    try:
        record, crl = pki.revoke(directory, name_or_serial, role=role, reason=reason,
                                 crl_days=crl_days)
    except OrchError as exc:
        raise _fail(exc) from None
    click.echo(f"Revoked {record.role} certificate {record.name!r} serial {record.serial} "
               f"({reason})")
    _print_crl(crl)


def _print_crl(crl: Any) -> None:
    click.echo(f"Wrote CRL number {crl.number} ({crl.revoked} revoked) to {crl.path}, "
               f"next update by {crl.next_update}")
    click.echo("Copy it to every node and client (the tls_crl setting), then send SIGHUP to "
               "each `orch server`.")


@ca.command()
@_dir_option
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="How long the CRL is announced as current (nextUpdate).")
def crl(directory: Path, days: int) -> None:
    """Write DIR/crl.pem: the CA's signed list of revoked certificates (re-run it before
    its next update date passes; processes warn about a stale CRL)."""
    from orch.security import pki

    try:
        written = pki.write_crl(directory, days)
    except OrchError as exc:
        raise _fail(exc) from None
    _print_crl(written)


@ca.command()
@_dir_option
@click.argument("name", metavar="NAME")
@_role_option
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="How long the new certificate is valid (default: as long as the old).")
def renew(directory: Path, name: str, role: str | None, days: int | None) -> None:
    """Issue NAME a new certificate and key with the same role and names.

    The files in DIR/issued are replaced; the old certificate is listed as 'replaced' and
    stays valid until it expires (revoke it by serial once the new one is deployed). Copy
    the new files to the host, then SIGHUP its `orch server` (clients pick it up on their
    next run).
    """
    from orch.security import pki

    try:
        info = pki.renew(directory, name, role=role, days=days)
    except OrchError as exc:
        raise _fail(exc) from None
    _print_issued(directory, info.role, name, info)


@ca.command()
@click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
              help="YAML config file [env ORCH_CONFIG].")
@click.option("--identity", metavar="NAME", help="The certname to look up in --ssldir.")
@click.option("--ssldir", metavar="DIR", help="A Puppet ssl directory to adopt.")
@click.option("--tls-cert", metavar="FILE", help="Certificate (PEM).")
@click.option("--tls-key", metavar="FILE", help="Its private key (PEM).")
@click.option("--tls-ca", metavar="FILE", help="The CA certificate(s) (PEM).")
@click.option("--tls-crl", metavar="FILE", help="The certificate revocation list (PEM).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def check(config_file: str | None, as_json: bool, **flags: str | None) -> None:
    """Load the credentials the x509 provider would use, and say what they are.

    Uses the same settings as `orch server` and the client commands (config file, ORCH_*
    environment, these flags), so it answers "why is my node's key not found?" before the
    daemon is started. Exit code 1 with the reason when they cannot be used, or when the CRL
    (tls_crl) revokes the certificate.
    """
    from orch.core.config import load_settings
    from orch.security import pki

    try:
        settings = load_settings(config_file, flags, registry=cli_registry())
        paths = pki.resolve_credential_paths(settings)
        cert, _key, anchors = pki.load_credentials(settings)
    except OrchError as exc:
        raise _fail(exc) from None
    try:
        crl_path = pki.resolve_crl_path(settings)
        crl = pki.load_revocation(crl_path, anchors)
    except OrchError as exc:
        raise _fail(exc) from None
    issuer = pki.chains_to(cert, anchors) or anchors[0]
    revoked = crl.is_revoked(pki.fingerprint(issuer), cert.serial_number)
    from orch.security.x509_settings import SECTION, X509Settings

    try:
        patterns = settings.section(SECTION, X509Settings).client_certnames
    except OrchError as exc:
        raise _fail(exc) from None
    patterns = patterns or list(pki.DEFAULT_CLIENT_CERTNAMES)
    try:
        role = pki.effective_role(cert, issuer, patterns) or "none (not issued by orch ca)"
    except ValueError as exc:
        role = f"invalid ({exc})"
    report = {
        "source": paths.source,
        "certificate": str(paths.cert),
        "key": str(paths.key),
        "ca": str(paths.ca),
        "name": pki.common_name(cert),
        "role": role,
        "issuer": pki.common_name(issuer) or issuer.subject.rfc4514_string(),
        "key_type": pki.key_type_of(cert.public_key()),
        "not_after": pki.format_time(pki.not_after(cert)),
        "fingerprint": pki.fingerprint(cert),
        "crl": f"{crl.path} ({len(crl)} revoked)" if crl.path else "none",
        "revoked": revoked,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for field, value in report.items():
            click.echo(f"{field + ':':<13} {value}")
    if revoked:
        raise click.ClickException(f"this certificate (serial {cert.serial_number:x}) is "
                                   f"revoked by {crl.path}; issue a new one")


@hookimpl
def orch_cli_commands() -> list[click.Command]:
    return [ca]
