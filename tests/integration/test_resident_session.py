"""``orch session``: real session processes, real ``orch`` commands handed to them.

Each test starts its own session in a directory of its own (a unix socket path must stay
under ~107 bytes, so not under pytest's long tmp path), and proves a command went through
the session by the session's ``served`` count, never by timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch_integration import CliResult, Fleet

from orch.resident import wire
from orch.testing import run_orch, wait_until
from orch.testing.servers import clean_environment, client_security, orch_argv


class Session:
    """One started session and the environment that reaches it."""

    def __init__(self, directory: str, idle: float = 300) -> None:
        self.env = {"ORCH_SESSION": "on", "ORCH_SESSION_DIR": directory}
        started = self.run("session", "start", "--json", "--idle", str(idle))
        assert started.rc == 0, started.describe()
        self.pid: int = started.json()["pid"]
        self.socket: str = started.json()["socket"]

    def run(self, *args: str, **kwargs: object) -> CliResult:
        env = {**self.env, **kwargs.pop("env", {})}  # type: ignore[dict-item]
        return run_orch(*args, env=env, **kwargs)  # type: ignore[arg-type]

    def status(self) -> dict[str, object] | None:
        result = self.run("session", "status", "--json")
        assert result.rc in (0, 3), result.describe()
        return result.json()  # type: ignore[no-any-return]

    def served(self) -> int:
        status = self.status()
        assert status is not None, "the session is not running"
        return int(status["served"])  # type: ignore[call-overload]

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.pid}").exists() and "Z" not in _state(self.pid)

    def close(self) -> None:
        self.run("session", "stop")
        try:
            wait_until(lambda: not self.alive(), timeout=15, what="the session to stop")
        except AssertionError:
            os.kill(self.pid, signal.SIGKILL)
            raise


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.fixture
def session_dir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="orch-s-", dir="/tmp")
    yield directory
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


@pytest.fixture
def session(session_dir: str) -> Iterator[Session]:
    started = Session(session_dir)
    yield started
    started.close()


def test_a_command_in_the_session_sees_the_callers_environment_and_directory(
        session: Session, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "orch").mkdir(parents=True)
    (home / ".config" / "orch" / "client.yaml").write_text("collective: from_home\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "relative.yaml").write_text("collective: from_relative\n")
    env = clean_environment({**session.env, "HOME": str(home)})

    def show(*args: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run([*orch_argv(), "config", "show", "--json", *args],
                              env={**env, **(extra or {})}, cwd=work, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = session.served()
    through_session = show()
    assert '"from_home"' in through_session
    assert '"from_relative"' in show("--config", "relative.yaml")
    assert session.served() == before + 2
    assert show(extra={"ORCH_SESSION": "off"}) == through_session


def test_exit_status_and_error_are_the_commands_own(session: Session) -> None:
    alone = run_orch("rpc", "nosuchagent", "act")
    before = session.served()
    handed = session.run("rpc", "nosuchagent", "act")
    assert session.served() == before + 1
    assert (handed.rc, handed.stdout, handed.stderr) == (alone.rc, alone.stdout, alone.stderr)
    assert handed.rc == 2 and "nosuchagent" in handed.stderr


def test_real_daemons_answer_a_command_run_by_the_session(session: Session,
                                                          fleet: Fleet) -> None:
    nodes = "\n".join(sorted(fleet.daemons)) + "\n"
    before = session.served()
    result = fleet.run_orch("rpc", "rpcutil", "ping", "--nodes", "-", "--json",
                            env=session.env, input=nodes)
    assert result.rc == 0, result.describe()
    assert sorted(r["sender"] for r in result.json()["replies"]) == sorted(fleet.daemons)
    assert session.served() == before + 1


def test_a_terminal_is_still_a_terminal(session: Session, fleet: Fleet,
                                        tmp_path: Path) -> None:
    """On a terminal orch draws a progress line and colours who did not answer; through
    the session it does the same, because the command's own terminal is handed over."""
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("no-such-node\n")
    env = clean_environment({**client_security(), "ORCH_BROKER": fleet.broker,
                             "ORCH_COLLECTIVE": fleet.collective, **session.env})
    before = session.served()
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [*orch_argv(), "rpc", "rpcutil", "ping", "--nodes", str(nodes), "-t", "1"],
            env=env, stdin=secondary, stdout=secondary, stderr=secondary)
        os.close(secondary)
        output = _read_terminal(primary, timeout=60)
    finally:
        os.close(primary)
    assert process.wait(timeout=30) == 1, output
    assert "\x1b[31m" in output and "No response from 1 node(s)" in output, output
    assert "0 / 1, 1 awaited" in output, output  # the progress line, terminals only
    assert session.served() == before + 1


def _read_terminal(primary: int, timeout: float) -> str:
    """Everything written to the terminal until every process closed it."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        if not select.select([primary], [], [], deadline - time.monotonic())[0]:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the last holder of the terminal's other side closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _long_command(session: Session, fleet: Fleet) -> subprocess.Popen[str]:
    """A call to a node that does not exist, with a 60 s timeout: it waits until stopped."""
    env = clean_environment({**client_security(), "ORCH_BROKER": fleet.broker,
                             "ORCH_COLLECTIVE": fleet.collective, **session.env})
    process = subprocess.Popen(
        [*orch_argv(), "rpc", "rpcutil", "ping", "-I", "no-such-node", "--timeout", "60"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    wait_until(lambda: (session.status() or {}).get("running") == 1, timeout=30,
               what="the command to start in the session")
    return process


def test_ctrl_c_reaches_the_command_in_the_session(session: Session, fleet: Fleet) -> None:
    process = _long_command(session, fleet)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)  # well before the call's own 60 s
    # Where the interrupt lands decides the words, as for a command run by itself: in the
    # call ("Interrupted …", 130), in click's start-up ("Aborted!", 1), or before click (130).
    assert process.returncode == 130 or (process.returncode == 1 and "Aborted!" in err), \
        (out, err)
    assert (session.status() or {}).get("running") == 0


def test_a_session_killed_mid_command_stops_it_and_says_so(session_dir: str,
                                                           fleet: Fleet) -> None:
    doomed = Session(session_dir)
    process = _long_command(doomed, fleet)
    child_pids = _children(doomed.pid)
    assert child_pids, "the session has no child running the command"
    os.kill(doomed.pid, signal.SIGKILL)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "the session ended before this command did, so the command was stopped" in err
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z"
                               for pid in child_pids), timeout=15, what="the command to stop")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_a_command_from_another_interpreter_setup_runs_by_itself(session: Session) -> None:
    before = session.served()
    result = session.run("config", "show", "--json",
                         env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert result.rc == 0, result.describe()
    assert session.served() == before  # declined (sys.warnoptions differ), ran here
    assert session.alive()


def test_a_shell_with_other_limits_keeps_them(session: Session) -> None:
    before = session.served()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = str(max(64, soft // 2))  # not the session's (inherited from this process)
    done = subprocess.run(
        ["sh", "-c", 'ulimit -S -n "$0" && exec "$@" config show', lower, *orch_argv()],
        env=clean_environment(session.env), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "collective" in done.stdout
    assert session.served() == before  # declined (another RLIMIT_NOFILE), ran by itself


@contextlib.contextmanager
def _control_group() -> Iterator[str]:
    """A new, empty control group of this machine's first writable hierarchy (its
    ``cgroup.procs`` file); skips where none can be made. Removed afterwards, once empty."""
    for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        group = os.path.join(root, f"orch-test-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.mkdir(group)
        except OSError:
            continue
        procs = os.path.join(group, "cgroup.procs")
        if os.path.exists(procs):
            break
        os.rmdir(group)
    else:
        pytest.skip("no control group can be made here (needs root and a writable cgroupfs)")
    try:
        yield procs
    finally:
        wait_until(lambda: not Path(procs).read_text().split(), timeout=30,
                   what=f"the processes in {group} to end")
        os.rmdir(group)


def test_another_control_group_starts_a_session_of_its_own(session: Session) -> None:
    """Another ssh login, or a systemd unit, is another control group: this session would
    refuse its commands, so it starts one of its own rather than run every command cold."""
    env = clean_environment({**session.env, "ORCH_SESSION": "auto"})
    with _control_group() as procs:
        def in_group(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *orch_argv(), *args],
                env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

        def status() -> object:
            done = in_group("session", "status", "--json")
            assert done.returncode in (0, 3), done.stderr
            return json.loads(done.stdout)

        try:
            first = in_group("config", "show")
            assert first.returncode == 0, first.stderr
            assert session.served() == 0  # never offered to this group's session
            wait_until(lambda: status() is not None, timeout=30,
                       what="the other control group's own session")
            theirs = status()
            assert isinstance(theirs, dict) and theirs["pid"] != session.pid
            assert theirs["socket"] != session.socket
            second = in_group("config", "show")
            assert second.returncode == 0 and second.stdout == first.stdout
            after = status()
            assert isinstance(after, dict) and after["served"] == 1
            assert session.served() == 0
        finally:
            in_group("session", "stop")


def test_garbage_on_the_socket_never_takes_the_session_down(session: Session) -> None:
    for raw in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x04nope", b"\x00\x00\x00\x02[]"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(session.socket)
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b""  # dropped without an answer
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(session.socket)
        wire.send_frame(sock, {"op": "run", "argv": "not a list"})
        assert wire.recv_frame(sock)[0] == {"refused": "a malformed command"}
    assert session.status() is not None and session.served() == 0


def test_status_start_and_stop_say_what_they_did(session_dir: str) -> None:
    env = {"ORCH_SESSION": "on", "ORCH_SESSION_DIR": session_dir}
    none = run_orch("session", "status", env=env)
    assert none.rc == 3 and "No orch session is running" in none.stdout
    assert run_orch("session", "status", "--json", env=env).json() is None
    first = Session(session_dir)
    try:
        again = run_orch("session", "start", env=env)
        assert again.rc == 0 and f"already running (pid {first.pid})" in again.stdout
        assert f"orch session {first.pid}: up" in run_orch("session", "status", env=env).stdout
    finally:
        stopped = run_orch("session", "stop", env=env)
    assert stopped.rc == 0 and f"orch session {first.pid} stopped" in stopped.stdout
    wait_until(lambda: not first.alive(), timeout=15, what="the session to stop")
    assert not os.path.exists(first.socket)
    assert run_orch("session", "stop", env=env).stdout.startswith("No orch session")


def test_an_idle_session_stops_by_itself(session_dir: str) -> None:
    idle = Session(session_dir, idle=0.5)
    wait_until(lambda: not idle.alive(), timeout=20, what="the idle session to stop")
    assert not os.path.exists(idle.socket)
    log = Path(idle.socket).with_suffix(".log").read_text()
    assert "session stopped: idle for 0.5 s" in log


def test_a_directory_others_can_enter_is_refused_at_start(tmp_path: Path) -> None:
    shared = tempfile.mkdtemp(prefix="orch-s-", dir="/tmp")
    try:
        os.chmod(shared, 0o755)
        result = run_orch("session", "start",
                          env={"ORCH_SESSION": "on", "ORCH_SESSION_DIR": shared})
        assert result.rc == 1 and "chmod 700" in result.stderr and not os.listdir(shared)
    finally:
        os.rmdir(shared)


def test_the_session_started_elsewhere_is_reused_after_a_crash(session_dir: str) -> None:
    crashed = Session(session_dir)
    os.kill(crashed.pid, signal.SIGKILL)
    wait_until(lambda: not crashed.alive(), timeout=15, what="the killed session to end")
    assert os.path.exists(crashed.socket)  # left behind
    env = {"ORCH_SESSION": "on", "ORCH_SESSION_DIR": session_dir}
    assert run_orch("config", "show", env=env).rc == 0  # runs by itself meanwhile
    replacement = Session(session_dir)
    try:
        assert replacement.pid != crashed.pid
    finally:
        replacement.close()


def _session_pids(session_dir: str) -> list[int]:
    """Live session processes serving ``session_dir`` (from their environment)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if (b"orch.resident.session" in cmdline
                and f"ORCH_SESSION_DIR={session_dir}".encode() in environ.split(b"\0")
                and _state(int(entry.name)) != "Z"):
            pids.append(int(entry.name))
    return pids


def _status(env: dict[str, str]) -> dict[str, object] | None:
    result = run_orch("session", "status", "--json", env=env)
    assert result.rc in (0, 3), result.describe()
    return result.json()  # type: ignore[no-any-return]


def _stop_all(session_dir: str, env: dict[str, str]) -> None:
    run_orch("session", "stop", env=env)
    try:
        wait_until(lambda: not _session_pids(session_dir), timeout=15,
                   what="the sessions to stop")
    finally:
        for pid in _session_pids(session_dir):
            os.kill(pid, signal.SIGKILL)


def _run_by_default(*args: str, session_dir: str) -> CliResult:
    """``orch ARGS`` as a user runs it: no ORCH_SESSION in its environment at all."""
    env = clean_environment({"ORCH_SESSION_DIR": session_dir, **client_security()})
    del env["ORCH_SESSION"]
    done = subprocess.run([*orch_argv(), *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("setting", ["auto", "unset"])
def test_auto_starts_a_session_for_the_next_commands(session_dir: str, setting: str) -> None:
    env = {"ORCH_SESSION": "auto", "ORCH_SESSION_DIR": session_dir}
    try:
        if setting == "unset":  # the default
            first = _run_by_default("config", "show", "--json", session_dir=session_dir)
        else:
            first = run_orch("config", "show", "--json", env=env)
        assert first.rc == 0, first.describe()  # ran by itself, at once
        wait_until(lambda: _status(env) is not None, timeout=30,
                   what="the session ORCH_SESSION=auto started")
        status = _status(env)
        assert status is not None and status["served"] == 0
        second = run_orch("config", "show", "--json", env=env)
        assert second.rc == 0 and second.stdout == first.stdout
        status = _status(env)
        assert status is not None and status["served"] == 1
        assert len(_session_pids(session_dir)) == 1
    finally:
        _stop_all(session_dir, env)


def test_commands_started_together_start_one_session(session_dir: str) -> None:
    env = clean_environment({"ORCH_SESSION": "auto", "ORCH_SESSION_DIR": session_dir})
    commands = [subprocess.Popen([*orch_argv(), "config", "show"], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for _ in range(6)]
    try:
        for command in commands:
            assert command.wait(60) == 0
        wait_until(lambda: _status(env) is not None, timeout=30, what="a session")
        # A session started while another holds the lock gives up by itself.
        wait_until(lambda: len(_session_pids(session_dir)) == 1, timeout=30,
                   what="the extra sessions to give up")
        status = _status(env)
        assert status is not None and status["pid"] in _session_pids(session_dir)
    finally:
        for command in commands:
            if command.poll() is None:
                command.kill()
            assert command.stderr is not None
            command.stderr.close()
        _stop_all(session_dir, env)


def test_auto_replaces_a_killed_session(session_dir: str) -> None:
    crashed = Session(session_dir)
    os.kill(crashed.pid, signal.SIGKILL)
    wait_until(lambda: not crashed.alive(), timeout=15, what="the killed session to end")
    assert os.path.exists(crashed.socket)  # left behind, with its lock released
    env = {"ORCH_SESSION": "auto", "ORCH_SESSION_DIR": session_dir}
    try:
        assert run_orch("config", "show", env=env).rc == 0
        wait_until(lambda: _status(env) is not None, timeout=30, what="the new session")
        status = _status(env)
        assert status is not None and status["pid"] != crashed.pid
    finally:
        _stop_all(session_dir, env)


def test_a_second_session_gives_way_to_the_running_one(session: Session) -> None:
    env = clean_environment(session.env)
    second = subprocess.run(
        [sys.executable, "-P", "-m", "orch.resident.session", "--script-dir", "/"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert second.returncode == 1
    assert "another session is starting or running" in second.stderr
    assert os.path.exists(session.socket) and session.served() == 0  # untouched


def test_a_new_session_starts_while_a_stopping_one_finishes_its_commands(
        session_dir: str, fleet: Fleet) -> None:
    old = Session(session_dir)
    process = _long_command(old, fleet)
    try:
        assert old.run("session", "stop").rc == 0
        assert old.alive()  # still running the command
        new = Session(session_dir)  # not kept out by the old one's lock
        try:
            assert new.pid != old.pid and new.status() is not None
        finally:
            new.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    wait_until(lambda: not old.alive(), timeout=15, what="the old session to end")
