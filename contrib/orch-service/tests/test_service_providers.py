"""Provider choice and command construction.

systemd is not running on the machines these tests run on (no /run/systemd/system: a
container), so the systemd provider is tested by the commands it builds and by parsing
``systemctl show`` output, never by running systemctl.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch_service.config import ServicePluginConfig
from orch_service.names import valid_name
from orch_service.providers import (
    ProviderError,
    SystemdProvider,
    SysVProvider,
    choose,
)


def systemd() -> SystemdProvider:
    return SystemdProvider("/usr/bin/systemctl", 5.0)


@pytest.mark.parametrize("action", ["start", "stop", "restart", "reload"])
def test_systemd_actions(action: str) -> None:
    assert systemd().argv(action, "nginx") == [
        "/usr/bin/systemctl", "--no-ask-password", action, "--", "nginx"]


def test_systemd_status_reads_load_and_active_state() -> None:
    assert systemd().argv("status", "getty@tty1") == [
        "/usr/bin/systemctl", "show", "--no-pager",
        "--property=LoadState,ActiveState,SubState", "--", "getty@tty1"]


@pytest.mark.parametrize(("output", "state"), [
    ("LoadState=loaded\nActiveState=active\nSubState=running\n", "running"),
    ("LoadState=loaded\nActiveState=reloading\nSubState=reload\n", "running"),
    ("LoadState=loaded\nActiveState=inactive\nSubState=dead\n", "stopped"),
    ("LoadState=loaded\nActiveState=failed\nSubState=failed\n", "stopped"),
    ("LoadState=not-found\nActiveState=inactive\nSubState=dead\n", "unknown"),
    ("", "unknown"),
])
def test_systemd_show_parsing(output: str, state: str) -> None:
    assert SystemdProvider.parse_show(output) == state


def test_sysv_commands() -> None:
    provider = SysVProvider("/usr/sbin/service", Path("/etc/init.d"), 5.0)
    assert provider.argv("restart", "cron") == ["/usr/sbin/service", "cron", "restart"]
    assert provider.argv("status", "cron") == ["/usr/sbin/service", "cron", "status"]


@pytest.mark.parametrize("bad", ["--global", "-x", "../x", "a b", "a/b", ""])
def test_no_provider_builds_a_command_from_a_bad_name(bad: str) -> None:
    with pytest.raises(ProviderError):
        systemd().argv("start", bad)
    with pytest.raises(ProviderError):
        SysVProvider("service", Path("/etc/init.d"), 5.0).argv("start", bad)


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ProviderError):
        systemd().argv("enable", "nginx")


@given(st.text(max_size=300))
def test_a_valid_name_is_never_an_option_or_a_path(name: str) -> None:
    if valid_name(name):
        assert not name.startswith("-") and "/" not in name and name not in (".", "..")
        assert not any(ch.isspace() for ch in name) and len(name) <= 255


def test_choose_by_what_the_node_has(tmp_path: Path) -> None:
    booted = tmp_path / "run-systemd-system"
    config = ServicePluginConfig.from_section({"systemctl": "/bin/systemctl",
                                               "service_command": "/usr/sbin/service"})
    assert choose(config, booted).name == "sysv"
    booted.mkdir()
    assert choose(config, booted).name == "systemd"
    forced = ServicePluginConfig.from_section({"provider": "sysv",
                                               "service_command": "/usr/sbin/service"})
    assert choose(forced, booted).name == "sysv"
    with pytest.raises(ProviderError):
        choose(ServicePluginConfig.from_section({"provider": "simulated"}), booted)
