"""The author kit end to end: ``orch plugin new`` → ``pip install`` in a fresh virtualenv →
the scaffolded test passes with orch.testing, and the agent answers over RabbitMQ.

Everything runs the way a plugin author and an operator would: the ``orch`` CLI and the
scaffolded tests run as subprocesses of the virtualenv's Python, the node is a real
``orch server`` process with a certificate issued by ``orch ca``, and the client signs with
its own certificate (``--security x509``).

The virtualenv sees the system site-packages (so orch and pytest) and gets only the
scaffolded distribution installed into it (``--no-deps``). Building it needs setuptools and
wheel: when this environment has both (or a setuptools that builds wheels by itself, 70.1+),
pip builds without isolation; otherwise pip fetches them for an isolated build from the
configured package index.

Until orch's own ``setup.cfg`` declares ``plugin = orch.cli.plugin`` in its ``orch``
entry-point group, the virtualenv gets a stand-in distribution declaring it, so ``orch
plugin`` is exercised through the real CLI either way. Likewise the scaffolded tests run with
``-p orch.testing`` until orch declares its ``pytest11`` entry point, and plain afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import site
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from click.testing import CliRunner
from orch_integration import (
    BROKERS,
    CliResult,
    clean_environment,
    new_collective,
    pip_build_options,
    wait_answering,
)

from orch.cli.plugin import plugin
from orch.testing import broker_problem, purge_collective

pytestmark = pytest.mark.integration

AGENT = "demoagent"
RABBITMQ = BROKERS["rabbitmq"]
MAIN = "from orch.cli.main import main; main()"
INSTALL_TIMEOUT = 300.0
RUN_TIMEOUT = 120.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# ----------------------------------------------------------------------------- helpers


def _run(args: list[str | Path], *, cwd: Path | None = None,
         env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT) -> CliResult:
    started = time.monotonic()
    try:
        proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL,
                              env=dict(env) if env is not None else _environment())
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(map(str, args))} did not finish within {timeout:g}s"
                             f"\nstdout: {exc.stdout!r}\nstderr: {exc.stderr!r}") from None
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def _environment() -> dict[str, str]:
    """No ORCH_* and no PYTEST_* variables of the outer run leak into the subprocesses."""
    return {k: v for k, v in clean_environment().items() if not k.startswith("PYTEST_")}


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _purelib(python: Path) -> Path:
    found = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    assert found.rc == 0, found.describe()
    return Path(found.stdout.strip())


def _make_venv(venv: Path, *options: str) -> Path:
    """A virtualenv that sees the system site-packages, and ours when the tests themselves
    run in a virtualenv (the approach of tests/unit/test_plugins.py)."""
    created = _run([sys.executable, "-m", "venv", "--system-site-packages", *options, venv])
    assert created.rc == 0, created.describe()
    python = _venv_python(venv)
    if sys.prefix != sys.base_prefix:
        ours = [d for d in site.getsitepackages() if Path(d).is_dir()]
        line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in ours)
        (_purelib(python) / "_orch_tests_parent_env.pth").write_text(line + "\n")
    return python


def _orch_declares(group: str, value: str) -> bool:
    """Whether an installed distribution advertises ``value`` in entry-point ``group``."""
    return any(ep.value == value for ep in metadata.entry_points(group=group))


@dataclass
class PluginEnv:
    """A virtualenv with the scaffolded plugin installed, and a way to run orch in it."""

    root: Path
    python: Path
    scaffold: Path
    new_output: str = ""
    #: The files ``orch plugin new`` wrote (before pip built in the tree).
    created: list[str] = field(default_factory=list)
    #: A directory with nothing importable in it: subprocesses run there, so that the
    #: installed copy of the plugin is used, not the scaffold's source tree.
    neutral: Path = field(init=False)

    def __post_init__(self) -> None:
        self.neutral = self.root / "run"
        self.neutral.mkdir(exist_ok=True)

    def orch(self, *args: str | Path, timeout: float = RUN_TIMEOUT) -> CliResult:
        return _run([self.python, "-c", MAIN, *args], cwd=self.neutral, timeout=timeout)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> PluginEnv:
    """``orch plugin new demoagent``, then ``pip install`` of the result into a fresh venv."""
    root = tmp_path_factory.mktemp("author-kit")
    # Without its own pip the venv is made in a fraction of a second; the outer pip is
    # importable through the system site-packages and installs into the venv (sys.prefix).
    python = _make_venv(root / "venv", "--without-pip")
    if _run([python, "-m", "pip", "--version"]).rc != 0:
        python = _make_venv(root / "venv", "--clear")
    assert _run([python, "-c", "import orch, pytest"]).rc == 0, "orch/pytest not importable"
    if not _orch_declares("orch", "orch.cli.plugin"):
        stand_in = _purelib(python) / "orch_author_kit_stand_in-0.dist-info"
        stand_in.mkdir()
        (stand_in / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: orch-author-kit-stand-in\nVersion: 0\n")
        (stand_in / "entry_points.txt").write_text("[orch]\nplugin = orch.cli.plugin\n")

    env = PluginEnv(root, python, root / f"orch-{AGENT}")
    created = env.orch("plugin", "new", AGENT, "--dir", root, "--author", "Author Kit Tests",
                       "--description", "Says hello back (100% scaffolded)")
    assert created.rc == 0, created.describe()
    env.new_output = created.stdout
    env.created = sorted(p.relative_to(env.scaffold).as_posix()
                         for p in env.scaffold.rglob("*") if p.is_file())

    installed = _run([python, "-m", "pip", "install", "--no-deps", "--no-input",
                      "--disable-pip-version-check", *pip_build_options(), env.scaffold],
                     cwd=env.neutral, timeout=INSTALL_TIMEOUT)
    assert installed.rc == 0, installed.describe()
    where = _run([python, "-c", f"import orch_{AGENT}.agent as m; print(m.__file__)"],
                 cwd=env.neutral)
    assert where.rc == 0, where.describe()
    module = Path(where.stdout.strip())
    assert module.is_relative_to(_purelib(python)), f"not the installed copy: {module}"
    assert (module.parent / f"{AGENT}.json").is_file(), "the DDL was not installed"
    return env


# ----------------------------------------------------------------------------- the scaffold


def test_scaffold_is_a_complete_distribution(plugin_env: PluginEnv) -> None:
    root = plugin_env.scaffold
    assert plugin_env.created == [".gitignore", "README.md", f"orch_{AGENT}/__init__.py",
                     f"orch_{AGENT}/agent.py", f"orch_{AGENT}/{AGENT}.json",
                     "pyproject.toml", "setup.cfg", f"tests/test_{AGENT}.py"]
    setup_cfg = (root / "setup.cfg").read_text()
    assert f"name = orch-{AGENT}\n" in setup_cfg
    assert f"orch =\n    {AGENT} = orch_{AGENT}.agent\n" in setup_cfg
    assert f"orch_{AGENT} = *.json\n" in setup_cfg
    assert "description = Says hello back (100%% scaffolded)\n" in setup_cfg
    ddl = json.loads((root / f"orch_{AGENT}" / f"{AGENT}.json").read_text())
    assert ddl["$schema"] == "https://choria.io/schemas/mcorpc/ddl/v1/agent.json"
    assert ddl["metadata"]["author"] == "Author Kit Tests"
    assert ddl["metadata"]["description"] == "Says hello back (100% scaffolded)"
    assert [a["action"] for a in ddl["actions"]] == ["echo"]
    # The next steps name what to run.
    for step in ("pip install -e", f"orch rpc {AGENT} echo --help", "pytest"):
        assert step in plugin_env.new_output


def test_installed_plugin_is_listed(plugin_env: PluginEnv) -> None:
    listed = plugin_env.orch("plugins", "--json")
    assert listed.rc == 0, listed.describe()
    by_name = {entry["name"]: entry for entry in listed.json()}
    assert by_name[AGENT] == {"name": AGENT, "distribution": f"orch-{AGENT}",
                              "version": "0.1.0", "hooks": ["orch_agent_names", "orch_agents"],
                              "error": None, "transports": []}


def test_scaffolded_tests_pass_with_orch_testing(plugin_env: PluginEnv) -> None:
    """Run from a neutral directory so the installed plugin is what the fleet hosts."""
    args: list[str | Path] = [plugin_env.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              plugin_env.scaffold / "tests"]
    if not _orch_declares("pytest11", "orch.testing"):
        args[3:3] = ["-p", "orch.testing"]
    ran = _run(args, cwd=plugin_env.neutral)
    assert ran.rc == 0, ran.describe()
    assert "4 passed" in ran.stdout, ran.describe()


def test_generated_documentation(plugin_env: PluginEnv) -> None:
    doc = plugin_env.orch("plugin", "doc", AGENT)
    assert doc.rc == 0, doc.describe()
    assert f"{AGENT}: Says hello back (100% scaffolded)" in doc.stdout
    assert "Author   Author Kit Tests" in doc.stdout
    assert f"Usage: orch rpc {AGENT} echo message=VALUE" in doc.stdout
    assert "message (string, required, max length 1024)" in doc.stdout
    assert "node [Node] (string): The identity of the node that answered" in doc.stdout

    helped = plugin_env.orch("rpc", AGENT, "echo", "--help")
    assert helped.rc == 0, helped.describe()
    assert f"Usage: orch rpc {AGENT} echo message=VALUE" in helped.stdout
    # `plugin doc` shows every action's DDL help exactly as `rpc AGENT ACTION --help` does;
    # `rpc … --help` then adds the command line's own rendering of the inputs as options.
    generated, options = helped.stdout.split("\nInput options (or name=VALUE):\n")
    assert generated.strip() in doc.stdout
    assert "--message" in options

    unknown = plugin_env.orch("plugin", "doc", "nosuchagent")
    assert unknown.rc == 2
    assert "no agent 'nosuchagent' is installed here" in unknown.stderr


# ----------------------------------------------------------------------------- over RabbitMQ


@dataclass
class Node:
    """One ``orch server`` process of the virtualenv, with certificates from ``orch ca``."""

    env: PluginEnv
    identity: str
    collective: str
    ca: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def ca_pem(self) -> Path:
        return self.ca / "ca.pem"

    def credentials(self, role: str, name: str) -> list[str]:
        issued = self.ca / "issued" / role / name
        return ["--security", "x509", "--tls-cert", f"{issued}.pem",
                "--tls-key", f"{issued}.key", "--tls-ca", str(self.ca_pem)]

    def start(self, facts: Path) -> None:
        self._log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [str(self.env.python), "-c", MAIN, "server", "--identity", self.identity,
             "--broker", RABBITMQ, "--collective", self.collective, "--facts", str(facts),
             "--log-level", "info", *self.credentials("node", self.identity)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.env.neutral, env=_environment())

    def wait_ready(self, client_settings: Mapping[str, Any]) -> None:
        """Ping the node directly until it answers (bounded), failing early if it exits."""
        wait_answering(client_settings, [self.identity],
                       running=lambda _: self.proc is not None and self.proc.poll() is None,
                       logs=lambda _: self.log(), timeout=READY_TIMEOUT)

    def stop(self) -> str | None:
        """SIGTERM, then SIGKILL past the timeout; returns a problem or None."""
        problem = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
                problem = f"orch server ignored SIGTERM for {STOP_TIMEOUT:g}s"
            if problem is None and self.proc.returncode != 0:
                problem = f"orch server exited with {self.proc.returncode} after SIGTERM"
        if self._log is not None:
            self._log.close()
            self._log = None
        return problem

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def failure_logs(self) -> list[tuple[str, str]]:
        """Picked up by conftest.py: the daemon's log is attached to a failed test."""
        return [(f"{self.collective} {self.identity}", self.log())]


@pytest.fixture
def rabbitmq_node(plugin_env: PluginEnv, tmp_path: Path) -> Iterator[Node]:
    """A started ``orch server`` of the venv on RabbitMQ, secured with ``orch ca`` certs."""
    problem = broker_problem(RABBITMQ)
    if problem is not None:
        pytest.fail(f"RabbitMQ {RABBITMQ} is not reachable: {problem}")
    node = Node(plugin_env, "demo-node-1", new_collective("scaffold"), tmp_path / "ca",
                tmp_path / "demo-node-1.log")
    for args in (["init"], ["issue", "--node", node.identity], ["issue", "--client", "tester"]):
        issued = plugin_env.orch("ca", args[0], "--dir", node.ca, *args[1:])
        assert issued.rc == 0, issued.describe()
    facts = tmp_path / "facts.yaml"
    facts.write_text(yaml.safe_dump({"role": "demo"}))
    node.start(facts)
    try:
        node.wait_ready({"broker": RABBITMQ, "collective": node.collective,
                         "security": "x509", "tls_cert": str(node.ca / "issued/client/tester.pem"),
                         "tls_key": str(node.ca / "issued/client/tester.key"),
                         "tls_ca": str(node.ca_pem)})
        yield node
    finally:
        problem = node.stop()
        with contextlib.suppress(Exception):
            purge_collective(RABBITMQ, node.collective)
    assert problem is None, f"{problem}\n{node.log()}"


def test_installed_agent_answers_over_rabbitmq(rabbitmq_node: Node) -> None:
    node = rabbitmq_node
    common = ["--broker", RABBITMQ, "-T", node.collective,
              *node.credentials("client", "tester"), "--json"]

    direct = node.env.orch("rpc", AGENT, "echo", "message=hello", "-I", node.identity,
                           *common)
    assert direct.rc == 0, direct.describe() + node.log()
    document = direct.json()
    assert document["expected"] == [node.identity]
    assert document["missing"] == [] and document["rejected"] == []
    [reply] = document["replies"]
    assert reply["sender"] == node.identity
    assert reply["status"] == "ok", reply
    assert reply["data"] == {"message": "hello", "node": node.identity}

    # With a fact filter the node is discovered first, as operators use it.
    discovered = node.env.orch("rpc", AGENT, "echo", "message=found you", "-F", "role=demo",
                               *common)
    assert discovered.rc == 0, discovered.describe() + node.log()
    assert [r["data"] for r in discovered.json()["replies"]] == [
        {"message": "found you", "node": node.identity}]

    # The daemon hosts the installed agent with its DDL's metadata.
    inventory = node.env.orch("rpc", "rpcutil", "agent_inventory", "-I", node.identity,
                              *common)
    assert inventory.rc == 0, inventory.describe()
    agents = {a["agent"]: a for a in inventory.json()["replies"][0]["data"]["agents"]}
    assert agents[AGENT]["version"] == "0.1.0"
    assert agents[AGENT]["author"] == "Author Kit Tests"

    # A missing required input is refused before anything is sent (exit 2, usage error).
    refused = node.env.orch("rpc", AGENT, "echo", "-I", node.identity, *common)
    assert refused.rc == 2, refused.describe()
    assert "message" in refused.stderr


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("name", "message"), [
    ("Demo-Agent", "'Demo-Agent' cannot name an agent: use lower-case letters, digits and "
                   "'_', starting with a letter (for example 'demo_agent')"),
    ("9lives", "'9lives' cannot name an agent"),
    ("rpcutil", "'rpcutil' is an agent orch ships"),
    ("x" * 51, "is too long for an agent name"),
])
def test_new_refuses_bad_names(tmp_path: Path, name: str, message: str) -> None:
    result = CliRunner().invoke(plugin, ["new", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_new_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "orch-taken").mkdir()
    (tmp_path / "orch-taken" / "mine.txt").write_text("the author's work")
    result = CliRunner().invoke(plugin, ["new", "taken", "--dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output
    assert sorted(p.name for p in (tmp_path / "orch-taken").iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orch-taken"]


def test_new_needs_an_existing_parent(tmp_path: Path) -> None:
    result = CliRunner().invoke(plugin, ["new", "fine", "--dir", str(tmp_path / "absent")])
    assert result.exit_code == 2, result.output
    assert "is not a directory" in result.output


def test_new_in_the_current_directory(tmp_path: Path) -> None:
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as here:
        result = runner.invoke(plugin, ["new", "disk_usage"])
        assert result.exit_code == 0, result.output
        agent = (Path(here) / "orch-disk_usage" / "orch_disk_usage" / "agent.py").read_text()
    assert "class DiskUsageAgent(Agent):" in agent
    assert 'name = "disk_usage"' in agent
    assert os.linesep.join(["", "Next steps:"]) in result.output
