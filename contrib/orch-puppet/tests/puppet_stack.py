"""A private, loopback-only Puppet stack for the integration tests.

Everything lives under one temporary directory: a ``puppetserver`` with its own CA,
configuration, code, logs and port (never the system's ``/etc/puppet`` or port 8140), and
any number of Puppet agents, each with its own confdir, vardir, publicdir, ssldir and
certname, all talking to that server. Nothing here touches the system's Puppet state
except reading the packaged puppetserver jar and its service list.

The server runs as root with the Debian package's command line (the systemd unit's
``ExecStart``) and a small heap. Everything started here is stopped by PID.
See ``../shared/anchors/puppet/README.md`` for the pitfalls this works around.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PUPPETSERVER_JAR = Path("/usr/share/puppetserver/puppetserver.jar")
PACKAGE_CONF = Path("/etc/puppet/puppetserver/conf.d")
PACKAGE_SERVICES = Path("/etc/puppet/puppetserver/services.d")
#: The anchor measured 21-23 s to ready with these flags (vs. 29-48 s with the default heap).
JAVA_ARGS = ("-Xms256m", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger")
START_TIMEOUT = float(os.environ.get("ORCH_PUPPET_START_TIMEOUT", "300"))

SITE_PP = """\
node default {
  include role::web
  file { "%(managed)s/${trusted['certname']}.site":
    ensure  => file,
    content => "site.pp for ${trusted['certname']}\\n",
  }
}
"""
# The exec makes every run last a few seconds, so that runs overlap and "applying" is
# observable by polling; a notify always counts as a change.
ROLE_WEB_PP = """\
class role::web {
  file { "%(managed)s/${trusted['certname']}.web":
    ensure  => file,
    content => "managed by puppetserver for ${trusted['certname']}\\n",
    mode    => '0644',
  }
  exec { 'role::web slow step':
    command => '/bin/sleep %(sleep)s',
  }
  notify { 'role::web applied': }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def puppet_installed() -> str | None:
    """None when the Puppet stack can run here, else why not."""
    for path in ("/usr/bin/puppet", "/usr/bin/facter", str(PUPPETSERVER_JAR), "/usr/bin/java"):
        if not Path(path).exists():
            return f"{path} is missing (run contrib/orch-puppet/tests/install-puppet.sh)"
    if os.geteuid() != 0:
        return "the Puppet integration tests must run as root"
    return None


@dataclass
class AgentNode:
    """One Puppet agent: its own certname and directories, against the stack's server."""

    certname: str
    root: Path

    @property
    def confdir(self) -> Path:
        return self.root / "conf"

    @property
    def statedir(self) -> Path:
        return self.root / "var" / "state"

    @property
    def lastrunfile(self) -> Path:
        return self.root / "public" / "last_run_summary.yaml"

    @property
    def run_lock(self) -> Path:
        return self.statedir / "agent_catalog_run.lock"

    @property
    def classfile(self) -> Path:
        return self.statedir / "classes.txt"

    def applying(self) -> bool:
        """Read the run lock the way Puppet does: it exists and names a live process."""
        try:
            pid = int(self.run_lock.read_text().strip() or "0")
        except (OSError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class PuppetStack:
    """A puppetserver and its agents under ``root``; call :meth:`start`, then :meth:`stop`."""

    root: Path
    port: int = field(default_factory=free_port)
    sleep_seconds: int = 2
    proc: subprocess.Popen[bytes] | None = None
    agents: dict[str, AgentNode] = field(default_factory=dict)
    ready_after: float = 0.0

    # -- layout ------------------------------------------------------------------------

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def managed_dir(self) -> Path:
        """Where the catalog's file resources go (one file per agent certname)."""
        return self.root / "managed"

    @property
    def cacert(self) -> Path:
        return self.server_dir / "ssl" / "certs" / "ca.pem"

    @property
    def log_file(self) -> Path:
        return self.server_dir / "log" / "puppetserver.log"

    @property
    def console_log(self) -> Path:
        return self.server_dir / "console.log"

    def _write_server_config(self) -> None:
        s = self.server_dir
        for sub in ("conf.d", "puppet", "code", "var", "run", "log", "ssl", "ca",
                    "jruby-gems", "home"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        self.managed_dir.mkdir(parents=True, exist_ok=True)
        for name in ("auth.conf", "ca.conf", "metrics.conf", "web-routes.conf"):
            shutil.copy(PACKAGE_CONF / name, s / "conf.d" / name)
        (s / "conf.d" / "global.conf").write_text(
            f"global: {{\n    logging-config: {s / 'logback.xml'}\n}}\n")
        (s / "conf.d" / "webserver.conf").write_text(
            "webserver: {\n    client-auth: want\n    ssl-host: 127.0.0.1\n"
            f"    ssl-port: {self.port}\n}}\n")
        (s / "conf.d" / "puppetserver.conf").write_text(f"""\
jruby-puppet: {{
    ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
    gem-home: {s / 'jruby-gems'}
    gem-path: [{s / 'jruby-gems'}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: {s / 'puppet'}
    server-code-dir: {s / 'code'}
    server-var-dir: {s / 'var'}
    server-run-dir: {s / 'run'}
    server-log-dir: {s / 'log'}
    max-active-instances: 1
}}
http-client: {{
}}
profiler: {{
}}
""")
        (s / "conf.d" / "product.conf").write_text(
            "product: {\n    check-for-updates: false\n}\n"
            "dropsonde: {\n    enabled: false\n}\n")
        (s / "logback.xml").write_text(f"""\
<configuration>
  <appender name="F1" class="ch.qos.logback.core.FileAppender">
    <file>{self.log_file}</file>
    <append>true</append>
    <encoder>
      <pattern>%d{{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}} %-5p [%t] [%c{{2}}] %m%n</pattern>
    </encoder>
  </appender>
  <logger name="org.eclipse.jetty" level="INFO"/>
  <root level="info"><appender-ref ref="F1"/></root>
</configuration>
""")
        (s / "puppet" / "puppet.conf").write_text(f"""\
# private puppetserver of the orch-puppet integration tests
[main]
certname = localhost
server = localhost
serverport = {self.port}
vardir = {s / 'var'}
ssldir = {s / 'ssl'}
rundir = {s / 'run'}
logdir = {s / 'log'}
codedir = {s / 'code'}
keylength = 2048
dns_alt_names = localhost,IP:127.0.0.1

[server]
cadir = {s / 'ca'}
autosign = true
ca_ttl = 5y
""")
        env = s / "code" / "environments" / "production"
        (env / "manifests").mkdir(parents=True, exist_ok=True)
        (env / "modules" / "role" / "manifests").mkdir(parents=True, exist_ok=True)
        values = {"managed": self.managed_dir, "sleep": self.sleep_seconds}
        (env / "manifests" / "site.pp").write_text(SITE_PP % values)
        (env / "modules" / "role" / "manifests" / "web.pp").write_text(ROLE_WEB_PP % values)

    # -- server lifecycle -------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start puppetserver and wait (bounded) until ``/status/v1/simple`` says running."""
        self._write_server_config()
        s = self.server_dir
        restart_file = s / "run" / "restart"
        restart_file.write_text("0")
        argv = [
            # SIGHUP back to its default: a JVM inheriting it ignored (pytest run under
            # nohup) never installs trapperkeeper's handler, and reload() would time out.
            "/usr/bin/env", "--default-signal=HUP", "/usr/bin/java", *JAVA_ARGS,
            "-Djruby.lib=/usr/share/jruby/lib", "-XX:+CrashOnOutOfMemoryError",
            f"-XX:ErrorFile={s / 'log' / 'puppetserver_err_pid%p.log'}",
            "-jar", str(PUPPETSERVER_JAR),
            "--config", str(s / "conf.d"),
            "--bootstrap-config", str(PACKAGE_SERVICES),
            "--restart-file", str(restart_file),
        ]
        env = {"HOME": str(s / "home"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        started = time.monotonic()
        with self.console_log.open("ab") as console:
            # A new session: never nohup (a JVM inheriting SIGHUP ignored never installs
            # trapperkeeper's handler) and never our process group (Ctrl-C in pytest).
            self.proc = subprocess.Popen(
                argv, cwd="/usr/share/puppetserver", env=env, stdout=console,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                restore_signals=True,
            )
        deadline = started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"puppetserver exited ({self.proc.returncode}) during "
                                   f"start-up:\n{self.log_tail()}")
            if restart_file.read_text().strip() == "1" and self.status() == "running":
                self.ready_after = time.monotonic() - started
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"puppetserver not ready after {timeout:g}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def reload(self, timeout: float = 180.0) -> None:
        """SIGHUP: trapperkeeper restarts its apps, so a new JRuby instance reads the
        changed ``puppet.conf`` / ``routes.yaml``; wait (bounded) until it is ready again.
        Trapperkeeper increments the restart file's counter when the apps are up: it is
        reset to 0 first, as the package's ``ExecReload`` does."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("puppetserver is not running")
        restart_file = self.server_dir / "run" / "restart"
        restart_file.write_text("0")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"puppetserver exited ({self.proc.returncode}) during "
                                   f"the reload:\n{self.log_tail()}")
            if restart_file.read_text().strip() == "1" and self.status() == "running":
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"puppetserver not ready {timeout:g}s after SIGHUP:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def status(self) -> str | None:
        """``/status/v1/simple`` over TLS checked against the stack's CA, or None."""
        if not self.cacert.exists():
            return None
        context = ssl.create_default_context(cafile=str(self.cacert))
        try:
            with urllib.request.urlopen(
                    f"https://localhost:{self.port}/status/v1/simple", context=context,
                    timeout=5) as response:
                return str(response.read().decode().strip())
        except OSError:
            return None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the JVM (it stops in about 2 s), SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def rss_mib(self) -> int | None:
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_file, self.console_log):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {path}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no puppetserver logs)"

    # -- agents ------------------------------------------------------------------------

    def add_agent(self, certname: str, bootstrap: bool = True) -> AgentNode:
        """Write ``certname``'s confdir and (by default) get its certificate signed."""
        node = AgentNode(certname, self.root / "agents" / certname)
        for sub in ("conf", "var", "public", "ssl", "run", "log"):
            (node.root / sub).mkdir(parents=True, exist_ok=True)
        (node.confdir / "puppet.conf").write_text(f"""\
# agent {certname} of the orch-puppet integration tests
[main]
certname = {certname}
server = localhost
serverport = {self.port}
vardir = {node.root / 'var'}
publicdir = {node.root / 'public'}
ssldir = {node.root / 'ssl'}
rundir = {node.root / 'run'}
logdir = {node.root / 'log'}
keylength = 2048

[agent]
report = true
""")
        self.agents[certname] = node
        if bootstrap:
            self.bootstrap(node)
        return node

    def bootstrap(self, node: AgentNode, timeout: float = 120.0) -> None:
        """Key, CSR, autosign, certificate: ``puppet ssl bootstrap`` (no catalog run).

        ``--http_keepalive_timeout 0``: with a reused TLS 1.3 connection the certificate
        GET after the CSR stalls for Jetty's 30 s idle timeout (ruby bug 19017).
        """
        result = subprocess.run(
            ["puppet", "ssl", "bootstrap", "--confdir", str(node.confdir),
             "--http_keepalive_timeout", "0", "--waitforcert", "0"],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeError(f"puppet ssl bootstrap for {node.certname} failed "
                               f"({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def run_agent(self, node: AgentNode, *extra: str, timeout: float = 180.0,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """One foreground ``puppet agent --onetime`` run (fixtures use it to prime state);
        ``env`` adds to the environment (``FACTER_<name>`` gives the node a custom fact)."""
        return subprocess.run(
            ["puppet", "agent", "--confdir", str(node.confdir), "--onetime",
             "--no-daemonize", "--no-usecacheonfailure", "--detailed-exitcodes",
             "--color=false", "--verbose", *extra],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )

    def compiled_for(self, certname: str) -> int:
        """How many catalogs the server log says it compiled for ``certname``."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f"Compiled catalog for {certname} ")

    def describe(self) -> dict[str, object]:
        return {"port": self.port, "ready_after_s": round(self.ready_after, 1),
                "rss_mib": self.rss_mib(), "root": str(self.root),
                "agents": sorted(self.agents)}


def dump(obj: object) -> str:
    return json.dumps(obj, indent=2, default=str)


def throwaway_agent(root: Path, certname: str, port: int) -> AgentNode:
    """A Puppet agent ready to run against ``127.0.0.1:port`` without ever having met a
    server: its key, certificate, CA certificate and CRL come from a throw-away CA made
    here (RSA 2048, valid two days). With nothing listening on ``port`` each run fails
    the way an unreachable server makes it fail: no catalog, ``status: failed``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    node = AgentNode(certname, root / certname)
    for sub in ("conf", "var", "public", "run", "log"):
        (node.root / sub).mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    begin, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=2)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orch-puppet throw-away CA")])
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(begin).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=False, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=True,
              crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, certname)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(begin).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(authority, critical=False)
            .sign(ca_key, hashes.SHA256()))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_name)
           .last_update(begin).next_update(end).add_extension(authority, critical=False)
           .add_extension(x509.CRLNumber(1), critical=False).sign(ca_key, hashes.SHA256()))
    ssl = node.root / "ssl"
    for sub in ("certs", "private_keys", "public_keys"):
        (ssl / sub).mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (ssl / "certs" / "ca.pem").write_bytes(ca.public_bytes(pem))
    (ssl / "certs" / f"{certname}.pem").write_bytes(cert.public_bytes(pem))
    (ssl / "crl.pem").write_bytes(crl.public_bytes(pem))
    private = ssl / "private_keys" / f"{certname}.pem"
    private.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    (ssl / "public_keys" / f"{certname}.pem").write_bytes(key.public_key().public_bytes(
        pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    (node.confdir / "puppet.conf").write_text(f"""\
# agent {certname} of the orch-puppet integration tests: throw-away CA, no server
[main]
certname = {certname}
server = 127.0.0.1
serverport = {port}
vardir = {node.root / 'var'}
publicdir = {node.root / 'public'}
ssldir = {ssl}
rundir = {node.root / 'run'}
logdir = {node.root / 'log'}

[agent]
report = true
""")
    return node
