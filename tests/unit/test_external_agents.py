"""External agents (:mod:`orch.agents.external`): scanning, the Choria protocol, and the
runner's handling of timeouts, crashes, bad output and concurrency.

The sample agents live in ``tests/unit/external_agents/`` (``pyecho`` in Python, ``shhello``
in POSIX shell); each test copies them into its own directory and adds broken agents there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import orch.agents.external as external
from orch.agents.external import (
    PROTOCOL_ACTIVATION,
    PROTOCOL_RPC_REQUEST,
    ExternalAgent,
    Refusal,
    scan,
)
from orch.core.agent import ActionReply, ActionRequest, Agent
from orch.core.client import Client
from orch.core.config import Settings, load_settings
from orch.core.filter import NodeView
from orch.core.fleet import Fleet, NodeSpec
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Status

FIXTURES = Path(__file__).resolve().parent / "external_agents"

ACTIVATE = f"""\
if [ "$CHORIA_EXTERNAL_PROTOCOL" = {PROTOCOL_ACTIVATION} ]; then
  printf '{{"activate": true}}' > "$CHORIA_EXTERNAL_REPLY"
  exit 0
fi
"""
OK_REPLY = """printf '{"statuscode": 0, "statusmsg": "OK", "data": {"done": true}}' \
> "$CHORIA_EXTERNAL_REPLY"
"""


# ----------------------------------------------------------------------------- helpers


def make_settings(*directories: Path, **external_limits: Any) -> Settings:
    plugins = {"external": {"kill_grace": 0.3, **external_limits}}
    return load_settings(overrides={"agents_dir": [str(d) for d in directories],
                                    "plugins": plugins}, environ={})


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """The sample agents, copied (modes restored) into a directory of this test's own."""
    directory = tmp_path / "agents"
    shutil.copytree(FIXTURES, directory)
    for executable in (directory / "pyecho", directory / "shhello" / "shhello"):
        executable.chmod(0o755)
    return directory


def ddl_document(name: str, actions: tuple[str, ...] = ("run",), timeout: float = 5,
                 **metadata: Any) -> dict[str, Any]:
    """A minimal DDL that passes orch's meta-schema."""
    return {
        "metadata": {"name": name, "description": f"test agent {name}", "author": "tests",
                     "license": "Apache-2.0", "version": "1.0.0", "timeout": timeout,
                     **metadata},
        "actions": [{"action": action, "description": action, "input": {}, "output": {}}
                    for action in actions],
    }


def write_agent(
    directory: Path,
    name: str,
    body: str,
    *,
    actions: tuple[str, ...] = ("run",),
    timeout: float = 5,
    activation: bool = True,
    mode: int = 0o755,
    ddl: dict[str, Any] | None = None,
) -> Path:
    """A shell agent ``name`` whose every action runs ``body`` (after the activation check
    unless ``activation`` is False), with a DDL declaring ``actions``."""
    directory.mkdir(parents=True, exist_ok=True)
    executable = directory / name
    executable.write_text("#!/bin/sh\n" + (ACTIVATE if activation else "") + body)
    executable.chmod(mode)
    if ddl is None:
        ddl = ddl_document(name, actions, timeout, provider="external")
    (directory / f"{name}.json").write_text(json.dumps(ddl))
    return executable


def load(*directories: Path, settings: Settings | None = None
         ) -> tuple[dict[str, type[Agent]], list[Refusal]]:
    settings = settings or make_settings(*directories)
    agents, refusals = scan(directories, settings)
    return {agent.name: agent for agent in agents}, refusals


def load_one(directory: Path, name: str, settings: Settings | None = None) -> type[Agent]:
    agents, refusals = load(directory, settings=settings)
    assert name in agents, refusals
    return agents[name]


@dataclass
class FakeNode:
    """The parts of a node an external agent uses."""

    settings: Settings
    identity: str = "node1.test"
    collective: str = "exttest"
    facts: dict[str, Any] = field(default_factory=lambda: {"role": "web", "cpus": 4})

    def view(self) -> NodeView:
        return NodeView(self.identity, self.facts)

    def statistics(self) -> dict[str, Any]:
        return {}

    def agent_ddl(self, name: str) -> Any:
        raise KeyError(name)


def call(agent: type[Agent], action: str, data: dict[str, Any] | None = None,
         settings: Settings | None = None, request_id: str | None = None) -> ActionReply:
    node = FakeNode(settings or make_settings())
    request = ActionRequest(agent.name, action, data or {}, "user=tester",
                            request_id or uuid.uuid4().hex, "client.test")
    return agent(node).run(request)


def executable_of(agent: type[Agent]) -> Path:
    assert issubclass(agent, ExternalAgent)
    return agent.executable


def refusal_for(refusals: list[Refusal], fragment: str) -> Refusal:
    matching = [r for r in refusals if fragment in r.path]
    assert len(matching) == 1, refusals
    return matching[0]


def live_processes(pgid: int | None = None, marker: str | None = None) -> list[int]:
    """Pids of live (not zombie) processes in group ``pgid`` or with ``marker`` in argv.

    Zombies are excluded: an orphan is reparented to pid 1, which in a container may never
    reap it, yet a zombie runs nothing and holds nothing.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat_line[stat_line.rindex(")") + 2:].split()
        state, group = fields[0], int(fields[2])
        if state in "ZX":
            continue
        if (pgid is not None and group == pgid) or (
                marker is not None and marker.encode() in cmdline):
            found.append(int(entry))
    return found


def wait_until_gone(pgid: int, marker: str, within: float = 3.0) -> list[int]:
    deadline = time.monotonic() + within
    while True:
        survivors = live_processes(pgid, marker)
        if not survivors or time.monotonic() > deadline:
            return survivors
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    external.rescan()
    yield
    external.rescan()


# ----------------------------------------------------------------------------- scanning


def test_scan_loads_the_python_and_shell_samples(agents_dir: Path) -> None:
    agents, refusals = load(agents_dir)
    assert refusals == []
    assert sorted(agents) == ["pyecho", "shhello"]
    pyecho, shhello = agents["pyecho"], agents["shhello"]
    assert issubclass(pyecho, Agent)
    assert sorted(pyecho.actions()) == ["echo", "fail", "sleep", "warn"]
    assert pyecho.ddl().timeout == 5
    assert pyecho.ddl().action("echo") is not None
    assert sorted(shhello.actions()) == ["hello"]
    # the two layouts: <dir>/<name> beside <name>.json, and <dir>/<name>/<name>
    assert executable_of(pyecho) == agents_dir / "pyecho"
    assert executable_of(shhello) == agents_dir / "shhello" / "shhello"


def test_missing_ddl_is_refused_with_the_reason(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    lonely.write_text("#!/bin/sh\nexit 0\n")
    lonely.chmod(0o755)
    (tmp_path / "README").write_text("not an agent, not executable: ignored")
    agents, refusals = load(tmp_path)
    assert agents == {}
    [refusal] = refusals
    assert refusal.path == str(lonely)
    assert "missing DDL" in refusal.reason and "lonely.json" in refusal.reason


def test_ruby_ddl_alone_gets_a_hint(tmp_path: Path) -> None:
    write_agent(tmp_path, "rubyish", OK_REPLY)
    (tmp_path / "rubyish.json").unlink()
    (tmp_path / "rubyish.ddl").write_text("metadata :name => 'rubyish'\n")
    _, refusals = load(tmp_path)
    assert "rubyish.ddl" in refusal_for(refusals, "rubyish").reason


def test_broken_ddl_is_refused(tmp_path: Path) -> None:
    write_agent(tmp_path, "broken", OK_REPLY)
    (tmp_path / "broken.json").write_text("{not json")
    write_agent(tmp_path, "nameless", OK_REPLY, ddl={"metadata": {}, "actions": []})
    agents, refusals = load(tmp_path)
    assert agents == {}
    assert "broken DDL" in refusal_for(refusals, "broken.json").reason
    reason = refusal_for(refusals, "nameless.json").reason
    assert reason.startswith("broken DDL") and "name" in reason


def test_ddl_name_must_match_the_file_name(tmp_path: Path) -> None:
    write_agent(tmp_path, "alpha", OK_REPLY, ddl=ddl_document("beta"))
    agents, refusals = load(tmp_path)
    assert agents == {}
    assert "'beta'" in refusal_for(refusals, "alpha.json").reason


def test_non_executable_is_refused(tmp_path: Path) -> None:
    write_agent(tmp_path, "noexec", OK_REPLY, mode=0o644)
    agents, refusals = load(tmp_path)
    assert agents == {}
    refusal = refusal_for(refusals, "noexec")
    assert refusal.path == str(tmp_path / "noexec")
    assert "not executable" in refusal.reason


def test_name_clash_first_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_agent(first, "twin", OK_REPLY)
    write_agent(second, "twin", OK_REPLY)
    agents, refusals = load(first, second)
    assert executable_of(agents["twin"]) == first / "twin"
    [refusal] = refusals
    assert refusal.path == str(second / "twin")
    assert "name clash" in refusal.reason and str(first / "twin") in refusal.reason


def test_builtin_names_are_reserved(tmp_path: Path) -> None:
    write_agent(tmp_path, "rpcutil", OK_REPLY)
    agents, refusals = load(tmp_path)
    assert agents == {}
    assert "built-in" in refusal_for(refusals, "rpcutil").reason


def test_ddl_of_a_non_external_agent_is_ignored_quietly(tmp_path: Path) -> None:
    """A shared MCollective agent directory holds Ruby agents' JSON DDLs: not refusals."""
    (tmp_path / "package.json").write_text(json.dumps(ddl_document("package", ("status",))))
    (tmp_path / "package.rb").write_text("# ruby agent\n")
    (tmp_path / "orphan.json").write_text(
        json.dumps(ddl_document("orphan", provider="external")))
    agents, refusals = load(tmp_path)
    assert agents == {}
    [refusal] = refusals  # only the DDL that claims to be external is reported
    assert refusal.path == str(tmp_path / "orphan.json")
    assert "no executable" in refusal.reason


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    _, refusals = load(tmp_path / "nowhere")
    [refusal] = refusals
    assert "does not exist" in refusal.reason


def test_multi_arch_binary_layout(tmp_path: Path) -> None:
    binary_dir = tmp_path / "goish"
    write_agent(binary_dir, f"goish-{external._go_platform()}", OK_REPLY)
    (binary_dir / f"goish-{external._go_platform()}.json").unlink()
    (tmp_path / "goish.json").write_text(
        json.dumps(ddl_document("goish", provider="external")))
    agent = load_one(tmp_path, "goish")
    assert call(agent, "run").data == {"done": True}


# ----------------------------------------------------------------------------- activation


def test_activation_false_is_refused(tmp_path: Path) -> None:
    write_agent(tmp_path, "shy", """printf '{"activate": false}' > "$CHORIA_EXTERNAL_REPLY"\n""",
                activation=False)
    agents, refusals = load(tmp_path)
    assert agents == {}
    assert "activate: false" in refusal_for(refusals, "shy").reason


def test_activation_failure_is_refused_with_stderr(tmp_path: Path) -> None:
    write_agent(tmp_path, "needy", "echo 'needs libfoo' >&2\nexit 1\n", activation=False)
    _, refusals = load(tmp_path)
    reason = refusal_for(refusals, "needy").reason
    assert "exited with status 1" in reason and "needs libfoo" in reason


def test_activation_timeout_is_refused(tmp_path: Path) -> None:
    write_agent(tmp_path, "slowstart", "sleep 30\n", activation=False)
    _, refusals = load(tmp_path, settings=make_settings(tmp_path, activation_timeout=0.5))
    # The refusal names the timeout: the 30 s script was not waited for.
    assert "activation check timed out" in refusal_for(refusals, "slowstart").reason


def test_activation_request_follows_the_protocol(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    write_agent(tmp_path / "agents", "curious", f"""\
cp "$CHORIA_EXTERNAL_REQUEST" {seen}.request
printf '%s\\n' "$3" "$CHORIA_EXTERNAL_PROTOCOL" > {seen}.protocol
printf '{{"activate": true}}' > "$CHORIA_EXTERNAL_REPLY"
""", activation=False)
    load_one(tmp_path / "agents", "curious")
    assert json.loads(Path(f"{seen}.request").read_text()) == {
        "$schema": "https://choria.io/schemas/mcorpc/external/v1/activation_request.json",
        "protocol": PROTOCOL_ACTIVATION, "agent": "curious"}
    assert Path(f"{seen}.protocol").read_text().split() == [PROTOCOL_ACTIVATION] * 2


# ----------------------------------------------------------------------------- success


def test_python_agent_success(agents_dir: Path) -> None:
    settings = load_settings(overrides={
        "agents_dir": [str(agents_dir)], "plugins": {"pyecho": {"colour": "blue"}}},
        environ={})
    agent = load_one(agents_dir, "pyecho", settings)
    reply = call(agent, "echo", {"message": "hello"}, settings, request_id="req-42")
    assert reply.statuscode == Status.OK, reply.statusmsg
    assert reply.statusmsg == "OK"
    data = reply.data
    assert data["message"] == "hello"
    assert data["request"] == {
        "$schema": "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json",
        "protocol": PROTOCOL_RPC_REQUEST, "agent": "pyecho", "action": "echo",
        "requestid": "req-42", "senderid": "client.test", "callerid": "user=tester",
        "collective": "exttest", "ttl": 60, "msgtime": data["request"]["msgtime"]}
    assert abs(data["request"]["msgtime"] - time.time()) < 60
    # argv: request file, reply file, protocol; the files are the env vars' files
    request_file, reply_file, protocol = data["argv"]
    assert protocol == PROTOCOL_RPC_REQUEST
    assert Path(request_file).parent == Path(reply_file).parent == Path(data["cwd"])
    assert {"CHORIA_EXTERNAL_REQUEST", "CHORIA_EXTERNAL_REPLY", "CHORIA_EXTERNAL_PROTOCOL",
            "CHORIA_EXTERNAL_CONFIG", "CHORIA_EXTERNAL_FACTS", "PATH"} <= set(data["env"])
    assert not any(name.startswith("ORCH_") for name in data["env"])
    # private files in a private directory, removed after the call
    assert data["request_file_mode"] == "0o600"
    assert data["workdir_mode"] == "0o700"
    assert not Path(data["cwd"]).exists()
    assert data["facts"] == {"role": "web", "cpus": 4}
    assert data["config"] == "colour = blue\n"
    assert data["defaulted"] == "from the DDL"  # the DDL's output default


def test_config_file_only_when_the_agent_has_settings(agents_dir: Path) -> None:
    reply = call(load_one(agents_dir, "pyecho"), "echo", {"message": "x"})
    assert reply.statuscode == Status.OK, reply.statusmsg
    assert reply.data["config"] is None
    assert "CHORIA_EXTERNAL_CONFIG" in reply.data["env"]


def test_shell_agent_success(agents_dir: Path) -> None:
    reply = call(load_one(agents_dir, "shhello"), "hello")
    assert reply.statuscode == Status.OK, reply.statusmsg
    assert reply.data["greeting"].startswith("hello from ")
    assert reply.data["shell"] is True


def test_agent_failure_status_reaches_the_caller(agents_dir: Path) -> None:
    reply = call(load_one(agents_dir, "pyecho"), "fail")
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg == "asked to fail"
    assert reply.data == {"partial": True}


def test_unknown_action_is_not_run(agents_dir: Path) -> None:
    reply = call(load_one(agents_dir, "pyecho"), "nope")
    assert reply.statuscode == Status.UNKNOWN_ACTION


# ----------------------------------------------------------------------------- timeouts


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    marker = str(700000 + uuid.uuid4().int % 99999)  # `sleep <marker>` is findable in /proc
    write_agent(tmp_path / "agents", "hang", f"echo $$ > {pidfile}\nsleep {marker} &\nwait\n",
                timeout=1)
    agent = load_one(tmp_path / "agents", "hang")
    reply = call(agent, "run")
    assert reply.statuscode == Status.ABORTED
    assert "timed out after 1s" in reply.statusmsg
    pgid = int(pidfile.read_text())
    assert wait_until_gone(pgid, f"sleep {marker}") == []


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    marker = str(800000 + uuid.uuid4().int % 99999)
    write_agent(tmp_path / "agents", "stubborn",
                f"trap '' TERM\necho $$ > {pidfile}\nsleep {marker} &\nwait\n", timeout=1)
    agent = load_one(tmp_path / "agents", "stubborn")
    reply = call(agent, "run")
    assert reply.statuscode == Status.ABORTED and "timed out" in reply.statusmsg
    # Only SIGKILL (after kill_grace) ends a group that ignores SIGTERM.
    assert wait_until_gone(int(pidfile.read_text()), f"sleep {marker}") == []


def test_python_agent_timeout(agents_dir: Path) -> None:
    ddl_file = agents_dir / "pyecho.json"
    ddl = json.loads(ddl_file.read_text())
    ddl["metadata"]["timeout"] = 1
    ddl_file.write_text(json.dumps(ddl))
    reply = call(load_one(agents_dir, "pyecho"), "sleep", {"seconds": 30})
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg == "pyecho.sleep timed out after 1s; its process group was killed"


def test_leftover_background_processes_are_killed(tmp_path: Path) -> None:
    """An agent that exits but leaves a child behind does not leak it."""
    pidfile = tmp_path / "pid"
    marker = str(600000 + uuid.uuid4().int % 99999)
    write_agent(tmp_path / "agents", "leaky",
                f"echo $$ > {pidfile}\nsleep {marker} >/dev/null 2>&1 &\n" + OK_REPLY)
    reply = call(load_one(tmp_path / "agents", "leaky"), "run")
    assert reply.statuscode == Status.OK, reply.statusmsg
    assert wait_until_gone(int(pidfile.read_text()), f"sleep {marker}") == []


# ----------------------------------------------------------------------------- failures


def test_crash_by_signal(tmp_path: Path) -> None:
    write_agent(tmp_path, "crashy", "echo 'about to crash' >&2\nkill -SEGV $$\n")
    reply = call(load_one(tmp_path, "crashy"), "run")
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg == "crashy.run was killed by SIGSEGV: about to crash"


def test_non_zero_exit(tmp_path: Path) -> None:
    write_agent(tmp_path, "failing", "echo 'some noise' >&2\necho 'disk on fire' >&2\nexit 3\n")
    reply = call(load_one(tmp_path, "failing"), "run")
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg == "failing.run exited with status 3: disk on fire"


def test_non_zero_exit_keeps_the_agents_own_message(tmp_path: Path) -> None:
    """py-mco-agent writes its failure reply and then exits 1."""
    write_agent(tmp_path, "pymco", """\
printf '{"statuscode": 4, "statusmsg": "package foo is unknown", "data": {"name": "foo"}}' \
> "$CHORIA_EXTERNAL_REPLY"
exit 1
""")
    reply = call(load_one(tmp_path, "pymco"), "run")
    assert reply.statuscode == Status.INVALID_DATA
    assert reply.statusmsg == "pymco.run exited with status 1: package foo is unknown"
    assert reply.data == {"name": "foo"}


def test_huge_reply_is_refused(tmp_path: Path) -> None:
    write_agent(tmp_path, "bloated", """\
head -c 2000000 /dev/zero | tr '\\0' 'x' > "$CHORIA_EXTERNAL_REPLY"
""")
    reply = call(load_one(tmp_path, "bloated"), "run")
    assert reply.statuscode == Status.ABORTED
    assert "output too large" in reply.statusmsg and "1048576" in reply.statusmsg


def test_runaway_reply_writer_is_stopped_early(tmp_path: Path) -> None:
    write_agent(tmp_path, "runaway", """\
while :; do printf '%01000d' 0; done > "$CHORIA_EXTERNAL_REPLY"
""", timeout=30)
    reply = call(load_one(tmp_path, "runaway"), "run")
    # Stopped for its size, so long before the 30 s timeout (which would say "timed out").
    assert reply.statuscode == Status.ABORTED
    assert "output too large" in reply.statusmsg and "timed out" not in reply.statusmsg


def test_huge_stdout_and_stderr_are_truncated_not_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_agent(tmp_path, "chatty", """\
head -c 5000000 /dev/zero | tr '\\0' 'y'
head -c 5000000 /dev/zero | tr '\\0' 'z' >&2
""" + OK_REPLY)
    caplog.set_level(logging.INFO, logger="orch.agents.external")
    reply = call(load_one(tmp_path, "chatty"), "run")
    # OK, not "timed out": the pipes were drained while the agent ran, never blocked.
    assert reply.statuscode == Status.OK, reply.statusmsg
    assert reply.data == {"done": True}
    truncations = [r.getMessage() for r in caplog.records if "more bytes not logged" in
                   r.getMessage()]
    assert len(truncations) == 2
    logged = sum(len(r.getMessage()) for r in caplog.records)
    assert logged < 200_000


def test_bad_json_reply(tmp_path: Path) -> None:
    write_agent(tmp_path, "garbled", """\
printf '{"statuscode": 0, "data": ' > "$CHORIA_EXTERNAL_REPLY"
""")
    reply = call(load_one(tmp_path, "garbled"), "run")
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg.startswith("garbled.run wrote a reply that is not valid JSON")


@pytest.mark.parametrize(("content", "problem"), [
    ("[1, 2]", "a JSON list as its reply, not an object"),
    ('{"statuscode": 9}', "invalid statuscode 9"),
    ('{"statuscode": true}', "invalid statuscode True"),
    ('{"statuscode": 0, "data": [1]}', "data is a list"),
    ('{"statuscode": 0, "statusmsg": 5}', "statusmsg is not a string"),
])
def test_malformed_reply(tmp_path: Path, content: str, problem: str) -> None:
    write_agent(tmp_path, "odd", f"printf '%s' '{content}' > \"$CHORIA_EXTERNAL_REPLY\"\n")
    reply = call(load_one(tmp_path, "odd"), "run")
    assert reply.statuscode == Status.ABORTED
    assert problem in reply.statusmsg


def test_missing_reply_file(tmp_path: Path) -> None:
    write_agent(tmp_path, "silent", "echo 'forgot to answer' >&2\nexit 0\n")
    write_agent(tmp_path, "remover", 'rm -f "$CHORIA_EXTERNAL_REPLY"\n')
    for name in ("silent", "remover"):
        reply = call(load_one(tmp_path, name), "run")
        assert reply.statuscode == Status.ABORTED
        assert f"{name}.run wrote no reply to $CHORIA_EXTERNAL_REPLY" in reply.statusmsg
    assert call(load_one(tmp_path, "silent"), "run").statusmsg.endswith(": forgot to answer")


def test_minimal_reply_gets_defaults(tmp_path: Path) -> None:
    write_agent(tmp_path, "terse", """printf '{}' > "$CHORIA_EXTERNAL_REPLY"\n""")
    reply = call(load_one(tmp_path, "terse"), "run")
    assert (reply.statuscode, reply.statusmsg, reply.data) == (Status.OK, "OK", {})


def test_executable_gone_after_scan_never_raises(tmp_path: Path) -> None:
    write_agent(tmp_path, "vanishing", OK_REPLY)
    agent = load_one(tmp_path, "vanishing")
    (tmp_path / "vanishing").unlink()
    reply = call(agent, "run")
    assert reply.statuscode == Status.ABORTED
    assert "could not start" in reply.statusmsg


def test_stderr_goes_to_the_daemon_log(agents_dir: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orch.agents.external")
    reply = call(load_one(agents_dir, "pyecho"), "warn", {"text": "low disk"},
                 request_id="req-stderr")
    assert reply.statuscode == Status.OK, reply.statusmsg
    records = {(r.levelno, r.getMessage()) for r in caplog.records}
    assert (logging.WARNING,
            "agent=pyecho action=warn request=req-stderr stderr: warning: low disk") in records
    assert (logging.INFO,
            "agent=pyecho action=warn request=req-stderr stdout: a line on stdout") in records


# ----------------------------------------------------------------------------- concurrency


def test_parallel_calls_run_side_by_side(tmp_path: Path) -> None:
    # Each call checks in, then waits (bounded) until all ten have: calls run one after
    # another would leave the first waiting alone until it gives up and fails.
    present = tmp_path / "present"
    present.mkdir()
    write_agent(tmp_path, "slow", f"""\
touch {present}/$$
n=0
while [ "$(ls {present} | wc -l)" -lt 10 ]; do
    n=$((n + 1)); [ $n -gt 400 ] && exit 1
    sleep 0.05
done
""" + OK_REPLY, timeout=30)
    agent = load_one(tmp_path, "slow")
    replies: list[ActionReply] = []
    threads = [threading.Thread(target=lambda: replies.append(call(agent, "run")))
               for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r.statuscode for r in replies] == [Status.OK] * 10


# ----------------------------------------------------------------------------- plugin hook


def test_hook_caches_the_scan_until_rescan_or_change(tmp_path: Path) -> None:
    counter = tmp_path / "activations"
    directory = tmp_path / "agents"
    write_agent(directory, "counted", f"""\
if [ "$CHORIA_EXTERNAL_PROTOCOL" = {PROTOCOL_ACTIVATION} ]; then
  echo x >> {counter}
  printf '{{"activate": true}}' > "$CHORIA_EXTERNAL_REPLY"
  exit 0
fi
""" + OK_REPLY, activation=False)
    settings = make_settings(directory)

    def activations() -> int:
        return len(counter.read_text().splitlines())

    first = list(external.orch_agents(settings))
    second = list(external.orch_agents(settings))
    assert [a.name for a in first] == ["counted"]
    assert first == second  # the same classes: plugin merging sees one agent
    assert activations() == 1
    external.rescan()
    external.orch_agents(settings)
    assert activations() == 2
    time.sleep(0.01)
    (directory / "counted.json").write_text((directory / "counted.json").read_text() + "\n")
    external.orch_agents(settings)
    assert activations() == 3
    assert external.orch_agents(make_settings()) == []


def test_hook_logs_loaded_and_refused(agents_dir: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    write_agent(agents_dir, "shy", """printf '{"activate": false}' > "$CHORIA_EXTERNAL_REPLY"\n""",
                activation=False)
    caplog.set_level(logging.INFO, logger="orch.agents.external")
    names = sorted(a.name for a in external.orch_agents(make_settings(agents_dir)))
    assert names == ["pyecho", "shhello"]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, f"external agent pyecho loaded from {agents_dir / 'pyecho'} "
            "(actions: echo, fail, sleep, warn; timeout 5s)") in messages
    refused = [m for level, m in messages if level == logging.WARNING]
    assert refused == [f"external agent refused: {agents_dir / 'shy'}: the agent declined "
                       "to activate on this node (activate: false)"]


# ----------------------------------------------------------------------------- end to end


def registry_with_external() -> PluginRegistry:
    registry = PluginRegistry.from_entry_points()
    if not registry.manager.is_registered(external):
        registry.register(external, "external")
    return registry


def test_end_to_end_through_fleet_and_client(agents_dir: Path) -> None:
    write_agent(agents_dir, "stuck", "sleep 30\n", timeout=3)
    settings = load_settings(overrides={
        "broker": "memory://", "collective": f"ext{uuid.uuid4().hex[:12]}",
        "agents_dir": [str(agents_dir)], "security": "insecure",
        "plugins": {"external": {"kill_grace": 0.2}},
        "discovery_timeout": 0.6, "discovery_window": 0.2, "timeout": 8}, environ={})
    registry = registry_with_external()
    with Fleet(settings, [NodeSpec("ext-node", {"role": "web"})], registry), \
            Client(settings, registry, caller="user=tester") as client:
        result = client.call("pyecho", "echo", {"message": "over the wire"})
        assert result.ok == ["ext-node"], result
        reply = result.replies["ext-node"]
        assert reply.data["message"] == "over the wire"
        assert reply.data["request"]["callerid"] == "user=tester"
        assert reply.data["facts"] == {"role": "web"}

        assert client.call("shhello", "hello").replies["ext-node"].data["shell"] is True

        # A hung agent is killed at its deadline and does not hold up other requests.
        stuck: list[Any] = []
        thread = threading.Thread(target=lambda: stuck.append(
            client.send_direct(client.new_request("stuck", "run"), ["ext-node"], 8)))
        with Client(settings, registry) as other:
            thread.start()
            time.sleep(0.2)  # pacing only: let the stuck request reach the node first
            assert other.ping(nodes=["ext-node"]).ok == ["ext-node"]
            # Answered while the stuck call was still waiting for its 3 s timeout.
            assert not stuck
        thread.join(10)
        [stuck_result] = stuck
        stuck_reply = stuck_result.replies["ext-node"]
        assert stuck_reply.statuscode == Status.ABORTED
        assert "timed out" in stuck_reply.statusmsg or "did not finish" in stuck_reply.statusmsg
