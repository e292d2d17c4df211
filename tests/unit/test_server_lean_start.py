"""``orch server`` starts without click, and kombu without ``importlib.metadata`` (issue 13).

The daemon's plain command line is parsed by :mod:`orch.cli.serve`; everything else (help,
errors) must stay click's, word for word. kombu's entry-point scan is answered from orch's
cached index (:mod:`orch.transports.kombu_import`).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from orch.cli import serve
from orch.cli.main import cli, main
from orch.cli.server import server
from orch.transports.kombu_import import cached_entrypoints

START_TIMEOUT = 60.0
#: What the daemon logs once it consumes (its imports for serving are done by then).
READY = b"node=n1 ready"


def test_the_plain_parser_knows_exactly_the_click_commands_options() -> None:
    declared = {opt: param.name for param in server.params for opt in param.opts}
    assert declared == dict(serve.OPTIONS)
    log_level = next(param for param in server.params if param.name == "log_level")
    assert tuple(log_level.type.choices) == serve.LOG_LEVELS  # type: ignore[attr-defined]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ORCH_CONFIG", "ORCH_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_command_line_is_parsed_as_click_would(clean_env: pytest.MonkeyPatch) -> None:
    parsed = serve.parse_plain(["--identity", "n1", "--workers", "4", "--log-level=debug",
                                "--identity=n2", "--broker", "amqp://h//"])
    assert parsed is not None
    assert parsed["identity"] == "n2"  # the last one wins, as in click
    assert parsed["workers"] == 4
    assert parsed["log_level"] == "debug"
    assert parsed["broker"] == "amqp://h//"
    assert parsed["config_file"] is None and parsed["tls_cert"] is None
    assert set(parsed) == set(serve.OPTIONS.values())


def test_orch_config_is_read_like_clicks_envvar(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORCH_CONFIG", "/etc/orch/server.yaml")
    assert serve.parse_plain([])["config_file"] == "/etc/orch/server.yaml"  # type: ignore[index]
    assert serve.parse_plain(["--config", "x.yaml"])["config_file"] == "x.yaml"  # type: ignore[index]
    clean_env.setenv("ORCH_CONFIG", "")
    assert serve.parse_plain([])["config_file"] is None  # type: ignore[index]


@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["--identity"], ["--identity", "--broker", "x"], ["--nope", "x"],
    ["--workers", "four"], ["--workers", "-1"], ["--log-level", "loud"], ["extra"],
    ["--", "--identity"], ["--identity", "-n"],
])
def test_anything_but_a_plain_command_line_is_left_to_click(
        clean_env: pytest.MonkeyPatch, args: list[str]) -> None:
    assert serve.parse_plain(args) is None


def test_a_bad_root_log_level_is_left_to_click(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORCH_LOG_LEVEL", "loud")
    assert serve.parse_plain(["--identity", "n1"]) is None


@pytest.mark.parametrize(("args", "code"), [
    (["server", "--help"], 0),
    (["server", "--workers", "four"], 2),
    (["server", "--nope"], 2),
])
def test_help_and_errors_are_clicks_word_for_word(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
        code: int) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    printed = capsys.readouterr()
    with pytest.raises(SystemExit) as click_exited:
        cli.main(args=args, prog_name="orch")  # the click command alone, as before
    expected = capsys.readouterr()
    assert exited.value.code == code == click_exited.value.code
    assert (printed.out, printed.err) == (expected.out, expected.err)
    assert "Usage: orch server" in printed.out + printed.err


def test_the_server_command_is_known_to_come_from_the_builtin_plugin() -> None:
    from orch.core.plugins import PluginRegistry

    registry = PluginRegistry.from_entry_points()
    registry.infos  # noqa: B018 — every plugin loaded: the index is written
    fresh = PluginRegistry.from_entry_points()
    assert fresh.index_providers("orch_cli_commands", "server") == [serve.BUILTIN_PROVIDER]
    assert serve.builtin_server(fresh)


def test_a_plugin_registered_by_hand_makes_the_index_unsure() -> None:
    from orch.core.plugins import PluginRegistry

    registry = PluginRegistry.from_entry_points()
    registry.infos  # noqa: B018
    fresh = PluginRegistry.from_entry_points()
    fresh.register(object(), "by-hand", "test", "0")
    assert fresh.index_providers("orch_cli_commands", "server") is None


def test_kombus_entry_points_come_from_the_cached_index() -> None:
    expected = sorted(ep.name for ep in metadata.entry_points(group="orch"))
    for _ in range(2):  # scanned and stored, then read from the index
        assert sorted(ep.name for ep, _loaded in cached_entrypoints("orch")) == expected


def _python(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    # -I: no current directory on sys.path, so the plugin index stays valid between runs.
    return subprocess.Popen([sys.executable, "-I", *args], env=env, cwd=cwd, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_kombu_is_imported_without_importlib_metadata_or_yaml(tmp_path: Path) -> None:
    env = {**os.environ, "ORCH_CACHE_DIR": str(tmp_path / "cache")}
    # Only what orch and kombu import counts: a .pth file of the interpreter's may import
    # some of these modules at start-up (one on the CI machine imports certifi: zipfile).
    code = ("import sys; before = set(sys.modules); "
            "from orch.transports.kombu_import import prepare; prepare(); "
            "import kombu.messaging, kombu.transport.pyamqp; "
            "print(sorted(m for m in ('email', 'zipfile', 'csv', 'importlib.metadata._meta', "
            "'yaml.loader') if m in sys.modules and m not in before)); "
            # Both load on first use, whole: orch's YAML readers and kombu's serializer.
            "import yaml, kombu.serialization as s; "
            "print(yaml.safe_load('a: [1]'), s.dumps({'b': 2}, 'yaml')[2].strip())")
    outputs = []
    for _ in range(2):  # the first run may scan and store the index
        out, err = _python("-c", code, env=env, cwd=tmp_path).communicate(
            timeout=START_TIMEOUT)
        assert not err, err
        outputs.append(out.strip())
    assert outputs[1] == "[]\n{'a': [1]} b: 2"


def _imports_of_a_started_daemon(tmp_path: Path, env: dict[str, str]) -> str:
    """``-X importtime`` of ``orch server`` on memory:// until it is ready, then SIGTERM.

    Read with a bounded wait (a daemon that never gets ready prints nothing more)."""
    proc = _python("-X", "importtime", "-c", "from orch.cli.main import main; main()",
                   "server", "--broker", "memory://", "--security", "insecure",
                   "--identity", "n1", "--collective", "leanstart", env=env, cwd=tmp_path)
    assert proc.stderr is not None
    chunks: list[bytes] = []
    deadline = time.monotonic() + START_TIMEOUT
    fd = proc.stderr.fileno()
    try:
        while READY not in b"".join(chunks) and time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not readable:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        proc.terminate()
        proc.wait(timeout=START_TIMEOUT)
        proc.stderr.close()
    text = b"".join(chunks).decode(errors="replace")
    assert READY.decode() in text, text[-2000:]
    return text


def _modules(importtime: str) -> set[str]:
    """The module names in ``-X importtime`` output."""
    return {line.rsplit("|", 1)[-1].strip() for line in importtime.splitlines()
            if line.startswith("import time:")}


def test_a_daemon_imports_neither_click_nor_importlib_metadata(tmp_path: Path) -> None:
    env = {**os.environ, "ORCH_CACHE_DIR": str(tmp_path / "cache")}
    _imports_of_a_started_daemon(tmp_path, env)  # may build the plugin index
    imported = _modules(_imports_of_a_started_daemon(tmp_path, env))
    # What the interpreter itself imports at start-up (site and its .pth files, which on
    # the CI machine import certifi and so importlib.resources) is not the daemon's doing.
    bare = _python("-X", "importtime", "-c", "pass", env=env, cwd=tmp_path)
    _, startup = bare.communicate(timeout=START_TIMEOUT)
    imported -= _modules(startup)
    assert "click" not in imported
    assert "importlib.metadata" not in imported
    assert "importlib.resources" not in imported
