"""A throw-away RabbitMQ node that speaks only TLS and logs clients in by certificate.

What the security tests need from a broker that an operator would run in production:

* AMQP over TLS only (``listeners.tcp = none``), on a free port of its own;
* every client must present a certificate issued by the test CA (``verify_peer`` +
  ``fail_if_no_peer_cert``);
* the login is the certificate's common name (RabbitMQ's EXTERNAL mechanism from the
  ``rabbitmq_auth_mechanism_ssl`` plugin), so the URL carries no user and no password:
  ``amqps://127.0.0.1:<port>//``. Each common name must exist as a RabbitMQ user with
  permissions on the vhost (``^orch\\.`` plus writing to ``amq.default``):
  :meth:`TLSRabbitMQ.add_external_user`.

The broker's own certificate is the one docs/security.md tells an operator to make:
``orch ca issue --server localhost``, which names ``localhost``, ``127.0.0.1`` and ``::1``
and can sign neither requests nor replies. The CA is RSA (``orch ca init --key-type rsa``) so that
every Erlang/OTP build can use it (some cannot use Ed25519 certificates for TLS). The TLS
listener also listens on :data:`OTHER_ADDRESS`, a name the certificate does not carry.

The node reuses :class:`private_brokers.PrivateRabbitMQ`'s way of running RabbitMQ as the
current user with its own node name, ports, data and log directories, and its bounded,
polling start and process-group cleanup.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orch_integration import orch_argv
from private_brokers import PrivateRabbitMQ, rabbitmq_tools

from orch.testing import bare_environment

#: The plugin that provides the EXTERNAL (certificate) login mechanism.
SSL_AUTH_PLUGIN = "rabbitmq_auth_mechanism_ssl"
#: The name (CN and DNS SAN) of the broker's own certificate.
BROKER_CERTNAME = "localhost"
#: A client certificate the readiness probe uses (not a RabbitMQ user: it never logs in).
PROBE_CERTNAME = "tls-probe"
#: A second loopback address the TLS listener also listens on. The broker's certificate does
#: not name it, so a client that checks the broker's name must refuse it there.
OTHER_ADDRESS = "127.0.0.2"
#: The RabbitMQ permissions (configure, write, read) orch needs: every exchange and queue it
#: uses is named ``orch.<collective>.…``, and it writes to the default exchange, which
#: addresses a node's or a client's queue by name.
ORCH_PERMISSIONS = (r"^orch\.", r"^(orch\..*|amq\.default)$", r"^orch\.")
#: AMQP 0-9-1 protocol header: what a client sends first on a new connection.
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def identity_permissions(role: str, name: str,
                         collectives: tuple[str, ...] = ("orch",)) -> tuple[str, str, str]:
    """The per-identity RabbitMQ permissions (configure, write, read) docs/security.md
    documents, for a ``node`` or ``client`` certificate named ``name``.

    A node may declare, bind and read only its own queue ``orch.C.node.<name>`` (and bind it
    to the requests exchange), and write replies to the default exchange; a client may
    declare and read only reply queues ``orch.C.reply.<hex>`` (exclusive: no other
    connection can read or delete one), and publish requests. So no node certificate can
    consume, unbind, purge or delete another node's queue.
    """
    import re

    group = "|".join(re.escape(c) for c in collectives)
    prefix = rf"^orch\.({group})\."
    if role == "node":
        own = rf"node\.{re.escape(name)}"
        return (rf"{prefix}(requests|{own})$", rf"^(amq\.default|orch\.({group})\.{own})$",
                rf"{prefix}(requests|{own})$")
    if role == "client":
        return (rf"{prefix}(requests|reply\.[0-9a-f]+)$",
                rf"^(amq\.default|orch\.({group})\.requests)$", rf"{prefix}reply\.[0-9a-f]+$")
    raise ValueError(f"no permissions for role {role!r}")


def rabbitmq_plugin_available(name: str = SSL_AUTH_PLUGIN) -> bool:
    """True if the installed RabbitMQ ships plugin ``name`` (its directory or .ez archive)."""
    patterns = [
        f"/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/{name}-*",
        f"/usr/local/lib/rabbitmq/lib/rabbitmq_server-*/plugins/{name}-*",
        f"/usr/lib/rabbitmq/plugins/{name}-*",
    ]
    plugins_dir = os.environ.get("RABBITMQ_PLUGINS_DIR")
    if plugins_dir:
        patterns += [os.path.join(d, f"{name}-*") for d in plugins_dir.split(":")]
    return any(glob.glob(pattern) for pattern in patterns)


def tls_rabbitmq_unavailable() -> str | None:
    """None when a TLS RabbitMQ node can be run here, else the reason (for pytest.skip)."""
    if rabbitmq_tools() is None:
        return "rabbitmq-server / rabbitmqctl are not installed"
    if not rabbitmq_plugin_available():
        return (f"the installed RabbitMQ has no {SSL_AUTH_PLUGIN} plugin (needed for "
                "certificate logins, auth_mechanisms EXTERNAL)")
    return None


def make_rsa_ca(directory: Path, name: str) -> Path:
    """``orch ca init --key-type rsa`` into ``directory`` (the CLI, as an operator runs it)."""
    _run_ca("init", "--dir", str(directory), "--key-type", "rsa", "--rsa-bits", "2048",
            "--name", name)
    return directory


def issue(ca_dir: Path, role: str, name: str) -> tuple[Path, Path]:
    """``orch ca issue --node|--client|--server NAME`` (once); returns (certificate, key)."""
    cert = ca_dir / "issued" / role / f"{name}.pem"
    if not cert.exists():
        _run_ca("issue", "--dir", str(ca_dir), f"--{role}", name)
    return cert, cert.with_suffix(".key")


def _run_ca(*args: str) -> None:
    env = bare_environment()
    done = subprocess.run([*orch_argv(), "ca", *args], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise AssertionError(f"orch ca {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")


def tls_probe(port: int, ca: Path, cert: Path | None = None, key: Path | None = None,
              timeout: float = 5.0) -> str | None:
    """Open a TLS connection to 127.0.0.1:``port`` and start AMQP on it.

    Returns None when the broker accepted the TLS session and answered the AMQP header
    (with ``connection.start``), else a description of the failure. With TLS 1.3 a broker
    that refuses the client certificate says so after the client's side of the handshake,
    so the answer is read before deciding.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                context.wrap_socket(raw) as tls:
            tls.sendall(AMQP_HEADER)
            data = tls.recv(7)
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if len(data) < 7 or data[0] != 1:  # frame type 1: a method frame (connection.start)
        return f"no AMQP connection.start frame (got {data!r})"
    return None


@dataclass
class TLSRabbitMQ(PrivateRabbitMQ):
    """A private RabbitMQ node: TLS listener on ``port`` only, EXTERNAL logins only.

    ``ca_dir`` is an ``orch ca`` directory; the broker's certificate is issued from it.
    """

    ca_dir: Path = Path()

    @property
    def url(self) -> str:
        """The URL an orch process uses: no user, so the certificate logs it in."""
        return f"amqps://127.0.0.1:{self.port}//"

    @property
    def other_url(self) -> str:
        """The same listener reached at an address its certificate does not name."""
        return f"amqps://{OTHER_ADDRESS}:{self.port}//"

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / "ca.pem"

    def environment(self) -> dict[str, str]:
        env = super().environment()  # directories, node name, dist port, env file
        cert, key = self.server_certificate()
        plugins = Path(env["RABBITMQ_ENABLED_PLUGINS_FILE"])
        plugins.write_text(f"[{SSL_AUTH_PLUGIN}].\n")
        Path(env["RABBITMQ_CONFIG_FILE"]).write_text(
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"listeners.ssl.other = {OTHER_ADDRESS}:{self.port}\n"
            f"ssl_options.cacertfile = {self.ca_file}\n"
            f"ssl_options.certfile = {cert}\n"
            f"ssl_options.keyfile = {key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "auth_mechanisms.1 = EXTERNAL\n"
            "ssl_cert_login_from = common_name\n"
            "loopback_users = none\n"
        )
        # Listeners come from the config file only: these two variables would add a plain
        # TCP listener (on 5672 when only the address is given).
        env.pop("RABBITMQ_NODE_PORT", None)
        env.pop("RABBITMQ_NODE_IP_ADDRESS", None)
        return env

    def _accepts_amqp(self) -> bool:
        """Ready when a client with a valid certificate gets an AMQP greeting over TLS."""
        cert, key = issue(self.ca_dir, "node", PROBE_CERTNAME)
        return tls_probe(self.port, self.ca_file, cert, key, timeout=2) is None

    def server_certificate(self) -> tuple[Path, Path]:
        """The broker's certificate and key (made once, by ``orch ca issue --server
        localhost``): names localhost, 127.0.0.1 and ::1 — but not :data:`OTHER_ADDRESS`."""
        return issue(self.ca_dir, "server", BROKER_CERTNAME)

    def add_external_user(self, name: str,
                          permissions: tuple[str, str, str] = ORCH_PERMISSIONS) -> None:
        """A RabbitMQ user ``name`` (a certificate's CN) allowed to configure, write and
        read the resources matching ``permissions`` on vhost ``/``.

        The password is random and then cleared: the user can log in with its certificate
        (EXTERNAL) and in no other way.
        """
        for args in (("add_user", name, secrets.token_hex(16)),
                     ("clear_password", name),
                     ("set_permissions", "-p", "/", name, *permissions)):
            done = self.ctl(*args)
            if done.returncode != 0 and not (args[0] == "add_user"
                                             and "already exists" in done.stderr + done.stdout):
                raise AssertionError(f"rabbitmqctl {' '.join(args[:2])} failed:\n"
                                     f"{done.stdout}\n{done.stderr}")

    def broker_log(self) -> str:
        """RabbitMQ's own log files (connection refusals and auth failures are there)."""
        texts = []
        for path in sorted((self.workdir / "log").glob("*.log")):
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    def failure_logs(self) -> list[tuple[str, str]]:
        tail = "\n".join(self.broker_log().splitlines()[-80:])
        return [*super().failure_logs(), (f"rabbitmq {self.node} log", tail)]
