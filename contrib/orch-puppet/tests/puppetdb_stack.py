"""A private, loopback-only PuppetDB for the integration tests, fed by a :class:`PuppetStack`.

PuppetDB comes from Debian's ``puppetdb`` package (its jar and ``bootstrap.cfg`` only):
its configuration, logs and state live under one temporary directory, it listens on a
free port of 127.0.0.1 over HTTPS only (client certificates required, the puppetserver's
own certificate and CA), and it stores into a uniquely named database on the shared
PostgreSQL (127.0.0.1:5432, trust auth) that is dropped at the end. The Debian service
(ports 8080/8081, ``/etc/puppetdb``) is never started.

:func:`connect_puppetserver` then points the stack's puppetserver at it (``puppetdb.conf``,
``routes.yaml`` for facts, ``storeconfigs`` for catalogs, from ``puppet-terminus-puppetdb``)
and reloads the server, so that agent runs store their facts and catalogs there.
Everything started here is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from orch.testing.servers import stop_process
from puppet_stack import PuppetStack, free_port

PUPPETDB_JAR = Path("/usr/share/puppetdb/puppetdb.jar")
PUPPETDB_BOOTSTRAP = Path("/etc/puppetdb/bootstrap.cfg")
PUPPETDB_AUTH = Path("/etc/puppetdb/conf.d/auth.conf")
TERMINUS = Path("/usr/lib/ruby/vendor_ruby/puppet/indirector/facts/puppetdb.rb")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
#: A bounded heap; the C1 compiler only and the serial GC start the JVM faster on 2 cores.
JAVA_ARGS = ("-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             "-Djava.security.egd=/dev/urandom")
START_TIMEOUT = 300.0


def puppetdb_installed() -> str | None:
    """None when PuppetDB and the puppetserver terminus are installed here, else why not."""
    for path in (PUPPETDB_JAR, PUPPETDB_BOOTSTRAP, TERMINUS):
        if not path.exists():
            return (f"{path} is missing (contrib/orch-puppet/tests/install-puppet.sh installs "
                    "puppetdb and puppet-terminus-puppetdb)")
    return None


def postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES, connect_timeout=5):
            return None
    except Exception as exc:  # any failure is the reason to report
        return f"PostgreSQL at 127.0.0.1:5432 is not usable ({exc})"


def _sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)


@dataclass
class PuppetDB:
    """PuppetDB under ``root`` with ``stack``'s CA; :meth:`start`, then :meth:`stop`."""

    root: Path
    stack: PuppetStack
    port: int = field(default_factory=free_port)
    database: str = field(default_factory=lambda: f"orch_pdb_{uuid.uuid4().hex[:10]}")
    proc: subprocess.Popen[bytes] | None = None
    ready_after: float = 0.0
    database_created: bool = False
    _started: float = 0.0

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "puppetdb.log"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def server_cert(self) -> Path:
        return self.stack.server_dir / "ssl" / "certs" / "localhost.pem"

    @property
    def server_key(self) -> Path:
        return self.stack.server_dir / "ssl" / "private_keys" / "localhost.pem"

    def _write_config(self) -> None:
        for sub in ("conf.d", "var", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        conf = self.root / "conf.d"
        (conf / "config.ini").write_text(f"""\
[global]
vardir = {self.root / 'var'}
logging-config = {self.root / 'logback.xml'}

[command-processing]
threads = 1
""")
        (conf / "database.ini").write_text(f"""\
[database]
subname = //127.0.0.1:5432/{self.database}
username = postgres
password =
""")
        # HTTPS only (no clear-text port), loopback only; client-auth defaults to "need".
        (conf / "jetty.ini").write_text(f"""\
[jetty]
ssl-host = 127.0.0.1
ssl-port = {self.port}
ssl-key = {self.server_key}
ssl-cert = {self.server_cert}
ssl-ca-cert = {self.stack.cacert}
""")
        shutil.copy(PUPPETDB_AUTH, conf / "auth.conf")
        (self.root / "logback.xml").write_text(f"""\
<configuration>
  <appender name="F1" class="ch.qos.logback.core.FileAppender">
    <file>{self.log_file}</file>
    <append>true</append>
    <encoder>
      <pattern>%d{{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}} %-5p [%t] [%c{{2}}] %m%n</pattern>
    </encoder>
  </appender>
  <root level="info"><appender-ref ref="F1"/></root>
</configuration>
""")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """:meth:`launch`, then :meth:`wait_ready`."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Create the database and start the PuppetDB JVM, without waiting for it (the
        caller may reload the puppetserver meanwhile: it does not contact PuppetDB then)."""
        _sql(f'CREATE DATABASE "{self.database}"')
        self.database_created = True
        # PuppetDB refuses to start without pg_trgm; only a superuser may create it.
        import psycopg

        with psycopg.connect(POSTGRES.rsplit("/", 1)[0] + f"/{self.database}",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        self._write_config()
        restart_file = self.root / "run" / "restart"
        restart_file.write_text("0")
        argv = ["/usr/bin/java", *JAVA_ARGS, "-XX:+CrashOnOutOfMemoryError",
                f"-XX:ErrorFile={self.root / 'log' / 'puppetdb_err_pid%p.log'}",
                "-cp", str(PUPPETDB_JAR), "clojure.main", "-m", "puppetlabs.puppetdb.core",
                "services", "--config", str(self.root / "conf.d"),
                "--bootstrap-config", str(PUPPETDB_BOOTSTRAP),
                "--restart-file", str(restart_file)]
        env = {"HOME": str(self.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}
        self._started = time.monotonic()
        with self.console_log.open("ab") as console:
            self.proc = subprocess.Popen(
                argv, cwd=str(self.root), env=env, stdout=console, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, restore_signals=True)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait (bounded, from the launch) until trapperkeeper says all services are up
        and PuppetDB answers a query; stop it and raise RuntimeError otherwise."""
        assert self.proc is not None, "launch() first"
        restart_file = self.root / "run" / "restart"
        deadline = self._started + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"puppetdb exited ({self.proc.returncode}) during "
                                   f"start-up:\n{self.log_tail()}")
            if restart_file.read_text().strip() == "1" and self._answers():
                self.ready_after = time.monotonic() - self._started
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"puppetdb not ready after {timeout:g}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def client_context(self) -> ssl.SSLContext:
        """TLS as the puppetserver: its certificate is one PuppetDB accepts."""
        context = ssl.create_default_context(cafile=str(self.stack.cacert))
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        return context

    def _answers(self) -> bool:
        try:
            self.query("nodes[certname] {}")
        except OSError:
            return False
        return True

    def query(self, pql: str) -> list[dict[str, object]]:
        """The rows PuppetDB answers for ``pql`` (to check what the fixture stored)."""
        url = f"{self.url}/pdb/query/v4?{urllib.parse.urlencode({'query': pql})}"
        with urllib.request.urlopen(url, context=self.client_context(),
                                    timeout=10) as response:
            rows = json.loads(response.read())
        assert isinstance(rows, list)
        return rows

    def wait_for(self, pql: str, count: int, timeout: float = 60.0) -> list[dict[str, object]]:
        """Commands are stored asynchronously: wait (bounded) until ``pql`` has ``count`` rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query(pql)
            if len(rows) >= count:
                return rows
            if time.monotonic() >= deadline:
                raise RuntimeError(f"PuppetDB answered {len(rows)} row(s) for {pql!r} after "
                                   f"{timeout:g}s, not {count}:\n{self.log_tail()}")
            time.sleep(0.3)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the JVM (SIGKILL after ``timeout``), then drop the database."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout, signal.SIGTERM)
        if self.database_created:
            self.database_created = False
            _sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_file, self.console_log):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {path}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no puppetdb logs)"


def connect_puppetserver(stack: PuppetStack, puppetdb: PuppetDB,
                         timeout: float = 180.0) -> None:
    """Make ``stack``'s puppetserver store facts and catalogs in ``puppetdb``, and reload it.

    The settings are read when the server's JRuby instance is made: SIGHUP restarts the
    trapperkeeper apps (the restart file goes back to 1 when they are up again).
    """
    confdir = stack.server_dir / "puppet"
    (confdir / "puppetdb.conf").write_text(
        f"[main]\nserver_urls = {puppetdb.url}\nsoft_write_failure = false\n")
    (confdir / "routes.yaml").write_text(
        "---\nserver:\n  facts:\n    terminus: puppetdb\n    cache: yaml\n")
    puppet_conf = confdir / "puppet.conf"
    text = puppet_conf.read_text()
    if "storeconfigs" not in text:
        puppet_conf.write_text(text.replace(
            "[server]\n", "[server]\nstoreconfigs = true\nstoreconfigs_backend = puppetdb\n"))
    stack.reload(timeout)


@dataclass(frozen=True)
class FedNode:
    """A node that reaches PuppetDB through a real agent run: its custom facts (given to
    facter as ``FACTER_<name>``) and the class its node definition includes."""

    certname: str
    facts: dict[str, str]
    klass: str


def feed(stack: PuppetStack, puppetdb: PuppetDB, nodes: list[FedNode],
         timeout: float = 180.0) -> None:
    """Give each node a node definition including its class, run a real ``puppet agent``
    for each (in parallel, each its own certname), and wait (bounded) until PuppetDB has
    stored every node's facts and catalog."""
    from concurrent.futures import ThreadPoolExecutor

    env_dir = stack.server_dir / "code" / "environments" / "production"
    module = env_dir / "modules" / "pdbtest" / "manifests"
    module.mkdir(parents=True, exist_ok=True)
    for klass in sorted({node.klass for node in nodes}):
        name = klass.split("::")[-1]
        (module / f"{name}.pp").write_text(
            f"class {klass} {{\n  notify {{ '{klass} applied': }}\n}}\n")
    # Every .pp file of the manifests directory is loaded (the default `manifest`).
    (env_dir / "manifests" / "puppetdb_nodes.pp").write_text("".join(
        f"node '{node.certname}' {{\n  include {node.klass}\n}}\n" for node in nodes))

    def run(node: FedNode) -> None:
        agent = stack.add_agent(node.certname)
        # No pluginsync: the run only has to send facts and get a catalog compiled.
        result = stack.run_agent(agent, "--no-pluginsync", timeout=timeout,
                                 env={f"FACTER_{k}": v for k, v in node.facts.items()})
        if result.returncode not in (0, 2):
            raise RuntimeError(f"agent run of {node.certname} failed ({result.returncode}):"
                               f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n"
                               f"{stack.log_tail()}")

    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(pool.map(run, nodes))
    names = ", ".join(json.dumps(node.certname) for node in nodes)
    puppetdb.wait_for(f"nodes[certname] {{ certname in [{names}] and "
                      "catalog_timestamp is not null and facts_timestamp is not null }",
                      len(nodes), timeout=timeout)
