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
    orch ca init  --dir /etc/orch/ca               create the CA (ed25519)
    orch ca issue --dir /etc/orch/ca --node web1   a certificate for server web1
    orch ca issue --dir /etc/orch/ca --client alice  a certificate for user alice
    orch ca list  --dir /etc/orch/ca               what was issued

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
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True,
              help="How long the certificate is valid.")
@_key_options(None)
@click.option("--force", is_flag=True, help="Replace an existing certificate of that name.")
def issue(directory: Path, node: str | None, client: str | None, days: int,
          key_type: str | None, rsa_bits: str | None, force: bool) -> None:
    """Issue a node or a client certificate, signed by the CA in DIR.

    Writes DIR/issued/<node|client>/NAME.pem and NAME.key (mode 0600) and prints the flags
    and config keys that use them. A node certificate can never sign requests and a client
    certificate can never sign replies. The name of a node certificate must be the node's
    identity.
    """
    from orch.core.protocol import valid_name
    from orch.security import pki

    if (node is None) == (client is None):
        raise click.UsageError("give exactly one of --node NAME or --client NAME")
    role = "node" if node is not None else "client"
    name = node if node is not None else client or ""
    if not valid_name(name):
        raise click.BadParameter(
            f"{name!r} is not a valid name: use letters, digits, '.', '_' and '-'",
            param_hint=f"--{role}")
    try:
        info = pki.issue(directory, name, role, days=days, key_type=key_type,
                         rsa_bits=int(rsa_bits) if rsa_bits else None, force=force)
    except OrchError as exc:
        raise _fail(exc) from None
    cert = os.path.abspath(info.cert_path)
    key = os.path.abspath(info.key_path or "")
    ca_pem = str((directory / "ca.pem").resolve())
    click.echo(f"Issued {role} certificate {name!r} ({info.key_type}), serial {info.serial}, "
               f"valid until {info.not_after}")
    click.echo(f"  certificate: {cert}")
    click.echo(f"  private key: {key}   (mode 0600; copy it with the same protection)")
    click.echo(f"  fingerprint: sha256 {info.fingerprint}")
    click.echo("")
    for line in _usage_lines(role, name, cert, key, ca_pem):
        click.echo(line)


@ca.command("list")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_(directory: Path, as_json: bool) -> None:
    """List the certificates issued from the CA in DIR: role, name, serial, expiry,
    fingerprint."""
    from orch.security import pki

    try:
        issued = pki.list_issued(directory)
    except OrchError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(pki.issued_json(issued))
        return
    if not issued:
        click.echo(f"No certificates issued from {directory} yet; "
                   f"run `orch ca issue --dir {directory} --node NAME` or `--client NAME`.")
        return
    width = max(len(c.name) for c in issued)
    click.echo(f"{'ROLE':<8} {'NAME':<{width}} {'NOT AFTER':<21} {'SERIAL':<40} "
               "FINGERPRINT (SHA-256)")
    for c in issued:
        if c.error:
            click.echo(f"{c.role:<8} {c.name:<{width}} {c.error}")
            continue
        state = " (expired)" if c.expired else ""
        click.echo(f"{c.role:<8} {c.name:<{width}} {c.not_after:<21} {c.serial:<40} "
                   f"{c.fingerprint}{state}")


@ca.command()
@click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
              help="YAML config file [env ORCH_CONFIG].")
@click.option("--identity", metavar="NAME", help="The certname to look up in --ssldir.")
@click.option("--ssldir", metavar="DIR", help="A Puppet ssl directory to adopt.")
@click.option("--tls-cert", metavar="FILE", help="Certificate (PEM).")
@click.option("--tls-key", metavar="FILE", help="Its private key (PEM).")
@click.option("--tls-ca", metavar="FILE", help="The CA certificate(s) (PEM).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def check(config_file: str | None, as_json: bool, **flags: str | None) -> None:
    """Load the credentials the x509 provider would use, and say what they are.

    Uses the same settings as `orch server` and the client commands (config file, ORCH_*
    environment, these flags), so it answers "why is my node's key not found?" before the
    daemon is started. Exit code 1 with the reason when they cannot be used.
    """
    from orch.core.config import load_settings
    from orch.security import pki

    try:
        settings = load_settings(config_file, flags)
        paths = pki.resolve_credential_paths(settings)
        cert, _key, anchors = pki.load_credentials(settings)
    except OrchError as exc:
        raise _fail(exc) from None
    issuer = pki.chains_to(cert, anchors) or anchors[0]
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
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for field, value in report.items():
        click.echo(f"{field + ':':<13} {value}")


@hookimpl
def orch_cli_commands() -> list[click.Command]:
    return [ca]
