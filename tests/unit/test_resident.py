"""The resident session's parts that run without a session process: frames, the checks the
thin client makes before it hands a command over, and the session's own checks.

The session itself (fork, streams, signals, exit status) is tested with real processes in
tests/integration/test_resident_session.py.
"""

from __future__ import annotations

import marshal
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.resident import client, wire
from orch.resident.session import Session, _exit_status, _malformed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left.settimeout(5)
    right.settimeout(5)
    yield left, right
    left.close()
    right.close()


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_a_frame_arrives_as_sent(message: dict[str, object]) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        right.settimeout(5)
        wire.send_frame(left, message)
        assert wire.recv_frame(right) == (message, [])


def test_descriptors_travel_with_the_first_frame(pair: tuple[socket.socket, socket.socket],
                                                 tmp_path: Path) -> None:
    left, right = pair
    with (tmp_path / "out").open("w") as handle:
        wire.send_frame(left, {"op": "run"}, [handle.fileno()])
        message, fds = wire.recv_frame(right, max_fds=3)
        assert message == {"op": "run"} and len(fds) == 1
        os.write(fds[0], b"written through the passed descriptor")
        os.close(fds[0])
    assert (tmp_path / "out").read_text() == "written through the passed descriptor"


@pytest.mark.parametrize("raw, problem", [
    ((wire.MAX_FRAME + 1).to_bytes(4, "big"), "over the"),
    (b"\x00\x00\x00\x05\xff\xff\xff\xff\xff", "not a frame"),
    (len(marshal.dumps([1])).to_bytes(4, "big") + marshal.dumps([1]), "must be a dict"),
    (b"\x00\x00\x00\x09{\"a\"", "closed in the middle"),
    (b"", "closed"),
])
def test_a_bad_frame_is_refused_with_a_reason(pair: tuple[socket.socket, socket.socket],
                                              raw: bytes, problem: str) -> None:
    left, right = pair
    left.sendall(raw)
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(wire.WireError, match=problem):
        wire.recv_frame(right)


def test_an_oversized_frame_is_never_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(wire.WireError, match="over the"):
        wire.send_frame(pair[0], {"env": "x" * wire.MAX_FRAME})


def test_the_directory_must_be_private(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    assert "chmod 700" in (wire.check_directory(str(tmp_path)) or "")
    tmp_path.chmod(0o700)
    assert wire.check_directory(str(tmp_path)) is None
    assert "No such file" in (wire.check_directory(str(tmp_path / "x")) or "")
    (tmp_path / "file").write_text("")
    assert "is not a directory" in (wire.check_directory(str(tmp_path / "file")) or "")


def test_python_and_python3_of_one_environment_share_a_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.realpath(sys.executable)
    path = wire.socket_path("/d")
    monkeypatch.setattr(sys, "executable", real)
    assert wire.socket_path("/d") == path
    monkeypatch.setattr(sys, "prefix", "/another/venv")
    assert wire.socket_path("/d") != path


def test_each_control_group_has_a_session_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another ssh login, or a systemd unit, would be refused by this one's session: it gets
    its own socket instead, so that it can start its own."""
    path = wire.socket_path("/d")
    assert wire.socket_path("/d") == path
    monkeypatch.setattr(wire, "_cgroup", lambda: "0::/user.slice/user-0.slice/session-99.scope\n")
    assert wire.socket_path("/d") != path


@pytest.fixture
def listening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A socket where the session's would be, that nobody answers."""
    directory = tmp_path / "s"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(wire.DIR_ENV, str(directory))
    monkeypatch.setenv(wire.SESSION_ENV, "on")  # use this one; never start another
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        server.bind(wire.socket_path())
    finally:
        os.umask(old)
    server.listen(4)
    server.setblocking(False)
    yield server
    server.close()


def _connected(server: socket.socket) -> bool:
    """Whether anyone connected (the thin client is synchronous: it would be queued now)."""
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("args", [["server", "--identity", "n1"], ["session", "stop"],
                                  ["demo"], ["--log-level", "debug", "api"]])
def test_own_process_commands_are_never_handed_over(listening: socket.socket,
                                                    args: list[str]) -> None:
    assert client.delegate(args) is None
    assert not _connected(listening)


def test_orch_session_off_runs_every_command_here(listening: socket.socket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wire.SESSION_ENV, "off")
    assert client.delegate(["ping"]) is None
    assert not _connected(listening)


def test_a_socket_in_a_shared_directory_is_not_used(listening: socket.socket) -> None:
    Path(wire.socket_path()).parent.chmod(0o755)
    assert client.delegate(["ping"]) is None
    assert not _connected(listening)


def test_without_a_session_the_command_runs_here(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wire.DIR_ENV, str(tmp_path))
    monkeypatch.setenv(wire.SESSION_ENV, "on")  # use one, start none (the default starts one)
    assert client.delegate(["ping"]) is None
    assert os.listdir(tmp_path) == []  # no session, no log, no lock


@pytest.mark.parametrize("value, mode", [
    (None, "auto"), ("", "auto"), ("auto", "auto"), (" AUTO ", "auto"),
    ("on", "on"), ("On", "on"),
    ("off", "off"), ("0", "off"), ("no", "off"), ("FALSE", "off"),
    ("sometimes", "auto"),
])
def test_orch_session_says_whether_sessions_start_by_themselves(
        value: str | None, mode: str) -> None:
    environ = {} if value is None else {wire.SESSION_ENV: value}
    assert wire.mode(environ) == mode
    assert wire.automatic(environ) == (mode == "auto")
    assert wire.disabled(environ) == (mode == "off")
    assert (wire.unknown_mode(environ) is not None) == (value == "sometimes")


def test_an_unknown_orch_session_value_is_named(listening: socket.socket,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(wire.SESSION_ENV, "sometimes")
    assert client.delegate(["server"]) is None
    assert "ORCH_SESSION=sometimes is not auto, on or off; taking auto" in capsys.readouterr().err


def test_a_session_that_never_answers_costs_a_bounded_wait(
        listening: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "CONNECT_TIMEOUT", 0.2)
    assert client.delegate(["ping"]) is None  # connected, sent, no answer: runs here


def _run_frame(**changes: object) -> dict[str, object]:
    frame: dict[str, object] = {
        "op": "run", "argv0": "orch", "argv": ["ping"], "env": {"HOME": "/root"},
        "cwd": "/", "umask": 0o022, "fds": [0, 1, 2], "streams": [None, None, None],
        "facts": wire.facts()}
    frame.update(changes)
    return frame


@pytest.mark.parametrize("changes, problem", [
    ({}, None),
    ({"argv": "ping"}, "malformed"),
    ({"env": {"A": 1}}, "malformed"),
    ({"umask": "022"}, "malformed"),
    ({"streams": [None]}, "malformed"),
    ({"fds": [0, 1]}, "did not arrive"),
    ({"fds": [0, 1, 7]}, "did not arrive"),
    ({"fds": [1, 1, 2]}, "did not arrive"),
])
def test_a_run_frame_must_be_whole(changes: dict[str, object], problem: str | None) -> None:
    found = _malformed(_run_frame(**changes), [10, 11, 12])
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize("key, value", [
    ("path", ["/elsewhere", *sys.path]),
    ("limits", {"RLIMIT_NOFILE": (64, 64)}),
    ("cgroup", "0::/system.slice/orch-registry.service\n"),
    ("namespaces", {"net": "net:[1]"}),
    ("uid", 12345),
])
def test_a_command_from_another_environment_is_declined(
        tmp_path: Path, request: pytest.FixtureRequest, key: str, value: object) -> None:
    session = Session(str(tmp_path / "s.sock"))
    session.warm(())
    request.addfinalizer(session.close)
    declined = session._refusal(_run_frame(facts={**wire.facts(), key: value}), [3, 4, 5])
    assert f"different {key} from the session's" in (declined or "")
    assert session._refusal(_run_frame(), [3, 4, 5]) is None


def test_a_changed_source_file_makes_the_session_stale(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "resident_probe_module.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "resident_probe_module", raising=False)
    session = Session(str(tmp_path / "s.sock"))
    session.warm(("resident_probe_module",))
    try:
        assert session.stale() is None
        info = module.stat()
        os.utime(module, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
        assert str(module) in (session.stale() or "")
        assert "stale" in (session._refusal(_run_frame(), [3, 4, 5]) or "")
        assert session.stopping is not None  # a stale session stops
    finally:
        session.close()
        sys.modules.pop("resident_probe_module", None)


@pytest.mark.parametrize("code, status", [(None, 0), (0, 0), (2, 2), (256, 0), ("why", 1)])
def test_exit_statuses_are_the_interpreters(code: object, status: int) -> None:
    assert _exit_status(code) == status
