"""The orch side of the integration tests: ``orch server`` processes beside Puppet agents,
and the ``orch`` CLI run as an operator runs it (see ``conftest.py`` for the fixtures)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from orch.testing import CliResult, bare_environment
from orch.testing.servers import orch_argv, wait_answering
from puppet_stack import AgentNode, PuppetStack

BROKER = os.environ.get("ORCH_PUPPET_TEST_BROKER", "redis://127.0.0.1:6379/0")
NODES = ("p1.localhost", "p2.localhost", "p3.localhost", "p4.localhost")
#: Agents with a throw-away CA and no server (``unreachable_fleet``): every run fails.
UNREACHABLE = ("f1.localhost", "f2.localhost")
CLI_TIMEOUT = 120.0
READY_TIMEOUT = 60.0


@dataclass
class OrchNode:
    identity: str
    agent: AgentNode
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class PuppetFleet:
    """The Puppet stack, its agents, the orch servers beside them and the client's CA."""

    #: None for agents without a server (a throw-away CA, an unreachable server).
    stack: PuppetStack | None
    workdir: Path
    broker: str
    collective: str
    ca_dir: Path
    nodes: dict[str, OrchNode] = field(default_factory=dict)

    def client_settings(self) -> dict[str, str]:
        """The client's settings: this fleet's collective, signed with the client
        certificate of the fleet's CA."""
        client = self.ca_dir / "issued" / "client"
        return {"broker": self.broker, "collective": self.collective, "security": "x509",
                "tls_cert": str(client / "tester.pem"), "tls_key": str(client / "tester.key"),
                "tls_ca": str(self.ca_dir / "ca.pem")}

    def client_env(self) -> dict[str, str]:
        env = bare_environment({f"ORCH_{key.upper()}": value
                                for key, value in self.client_settings().items()})
        env["ORCH_DISCOVERY_WINDOW"] = "0.5"
        return env

    def orch(self, *args: str, timeout: float = CLI_TIMEOUT) -> CliResult:
        """Run the ``orch`` CLI as an operator would (signed with the client certificate)."""
        try:
            proc = subprocess.run([*orch_argv(), *args], env=self.client_env(),
                                  capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"orch {' '.join(args)} did not finish in {timeout}s: "
                                 f"{exc.stdout!r} {exc.stderr!r}") from None
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def status(self, node: str) -> dict[str, Any]:
        result = self.orch("puppet", "status", "--json", "-I", node)
        assert result.rc == 0, result.describe()
        (reply,) = result.json()["replies"]
        return dict(reply["data"])

    def wait_idle_after(self, node: str, initiated_at: int, timeout: float = 180) -> \
            list[dict[str, Any]]:
        """Poll status until the run initiated at ``initiated_at`` has finished; return
        every status seen on the way (the timeline the tests assert on)."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.status(node)
            seen.append(data)
            if not data["applying"] and data["lastrun"] > initiated_at:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"{node}: no finished run after {timeout}s; last status: "
                             f"{seen[-1] if seen else None}\n{self.logs(node)}")

    def logs(self, node: str) -> str:
        orch_node = self.nodes[node]
        parts = []
        for path in (orch_node.log, orch_node.agent.root / "log" / "orch-runonce.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def failure_logs(self) -> list[tuple[str, str]]:
        sections = [(name, self.logs(name)) for name in self.nodes]
        if self.stack is not None:
            sections.append(("puppetserver", self.stack.log_tail(60)))
        return sections

    def start_node(self, name: str, agent: AgentNode, **puppet: Any) -> OrchNode:
        """An ``orch server`` for ``name`` beside ``agent`` (its confdir), signing with a
        certificate from the fleet's CA; ``puppet`` adds to ``plugins.puppet``."""
        orch = orch_argv()
        run([*orch, "ca", "issue", "--dir", str(self.ca_dir), "--node", name])
        config = self.workdir / f"{name}.yaml"
        issued = self.ca_dir / "issued" / "node"
        config.write_text(yaml.safe_dump({
            "identity": name, "collective": self.collective, "broker": self.broker,
            "security": "x509", "tls_cert": str(issued / f"{name}.pem"),
            "tls_key": str(issued / f"{name}.key"), "tls_ca": str(self.ca_dir / "ca.pem"),
            "classes": str(agent.classfile), "log_level": "info",
            "plugins": {"puppet": {"confdir": str(agent.confdir), **puppet}},
        }))
        node = OrchNode(name, agent, config, self.workdir / f"{name}.log")
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [*orch, "server", "--config", str(config)], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
                start_new_session=True)
        self.nodes[name] = node
        return node

    def wait_answering(self, names: Sequence[str], timeout: float = READY_TIMEOUT) -> None:
        """Until every ``orch server`` in ``names`` answers a ping (bounded): the readiness
        check of :mod:`orch.testing.servers`, signed as this fleet's client."""
        wait_answering(self.client_settings(), names,
                       running=lambda name: self.nodes[name].running(),
                       logs=lambda dead: "\n".join(self.logs(name) for name in dead),
                       timeout=timeout)


def run(argv: list[str], timeout: float = 60) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n"
                           f"{proc.stderr}")
    return proc.stdout
