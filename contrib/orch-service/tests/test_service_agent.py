"""The service agent on simulated nodes (orch.testing fleets, signed end to end): actions,
the allow list, refusals, and state that changes like a real node's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from orch.core.errors import ArgumentError, ConfigError
from orch.testing import OrchFleet, assert_all_ok, data_by_node

from orch_service.agent import ServiceAgent, SimulatedServiceAgent
from orch_service.config import ServicePluginConfig
from orch_service.simulated import SimulatedProvider, catalogue

Start = Callable[..., OrchFleet]
WEB = {"web1": {"role": "web"}, "web2": {"role": "web"}, "db1": {"role": "db"}}
CLASSES = {"web1": ["nginx"], "web2": ["nginx"], "db1": ["postgresql"]}


def test_status_of_a_service_every_node_has(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES)
    result = fleet.call("service", "status", service="cron")
    assert_all_ok(result, expected=fleet.identities)
    for data in data_by_node(result).values():
        assert data["status"] in ("running", "stopped")
        assert data["provider"] == "simulated"


def test_unknown_service_fails_on_that_node_only(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES)
    result = fleet.call("service", "status", service="nginx")
    assert result.ok == ["web1", "web2"]
    assert result.failed == ["db1"]
    assert "unknown service 'nginx'" in result.replies["db1"].statusmsg


def test_stop_start_restart_change_the_state(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES)
    stopped = fleet.call("service", "stop", service="cron")
    assert_all_ok(stopped)
    assert {d["status"] for d in data_by_node(stopped).values()} == {"stopped"}
    again = fleet.call("service", "stop", service="cron")
    assert {d["changed"] for d in data_by_node(again).values()} == {False}
    assert "already stopped" in again.replies["web1"].data["message"]
    status = fleet.call("service", "status", service="cron")
    assert {d["status"] for d in data_by_node(status).values()} == {"stopped"}
    started = fleet.call("service", "start", service="cron")
    assert {(d["previous"], d["status"], d["changed"])
            for d in data_by_node(started).values()} == {("stopped", "running", True)}
    restarted = fleet.call("service", "restart", service="cron")
    assert {d["message"] for d in data_by_node(restarted).values()} == {
        "cron restarted: now running"}


def test_changing_actions_are_refused_until_allowed(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES, allow=[])
    refused = fleet.call("service", "restart", service="cron")
    assert refused.failed == fleet.identities
    assert "add 'cron' (or 'all') to plugins.service.allow" in refused.replies["web1"].statusmsg
    assert_all_ok(fleet.call("service", "status", service="cron"))  # read-only: allowed


def test_allow_all_and_deny(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES, allow="all", deny=["ssh"])
    assert_all_ok(fleet.call("service", "restart", service="rsyslog"))
    denied = fleet.call("service", "stop", service="ssh")
    assert denied.failed == fleet.identities
    assert "denied on this node (plugins.service.deny)" in denied.replies["db1"].statusmsg


def test_unknown_service_is_refused_for_changes_too(service_fleet: Start) -> None:
    fleet = service_fleet(WEB, CLASSES)
    result = fleet.call("service", "restart", service="nginx")
    assert result.ok == ["web1", "web2"] and result.failed == ["db1"]
    assert result.replies["db1"].data["status"] == "unknown"


@pytest.mark.parametrize("name", ["-r", "../etc/passwd", "a b", "nginx;reboot", "", "x" * 256,
                                  "$(id)", "a/b"])
def test_bad_service_names_never_leave_the_client(service_fleet: Start, name: str) -> None:
    fleet = service_fleet(WEB, CLASSES)
    with pytest.raises(ArgumentError):
        fleet.call("service", "status", service=name)


def test_reload_of_a_stopped_service_fails_and_says_so(service_fleet: Start) -> None:
    fleet = service_fleet({"n1": {}})
    fleet.call("service", "stop", service="cron")
    result = fleet.call("service", "reload", service="cron")
    assert result.failed == ["n1"]
    assert "reload cron failed" in result.replies["n1"].statusmsg
    assert "the service is stopped" in result.replies["n1"].statusmsg


def test_simulated_state_is_per_node_and_deterministic() -> None:
    one = SimulatedProvider("web-001", ["nginx"])
    same = SimulatedProvider("web-001", ["nginx"])
    assert [one.state(s) for s in catalogue(["nginx"])] == \
        [same.state(s) for s in catalogue(["nginx"])]
    assert one.state("postgresql") == "unknown"
    states = [SimulatedProvider(f"n{i}", []).state("cron") for i in range(2000)]
    assert 0 < states.count("stopped") < 200  # a few percent, not none, not many
    pid = one.pid("cron")
    one.act("cron", "restart")
    assert one.pid("cron") not in (None, pid)


def test_the_real_agent_is_never_simulation_safe() -> None:
    assert ServiceAgent.simulation_safe is False
    assert SimulatedServiceAgent.simulation_safe is True
    assert ServiceAgent.simulation() is SimulatedServiceAgent
    assert SimulatedServiceAgent.name == ServiceAgent.name == "service"


@pytest.mark.parametrize(("section", "message"), [
    ({"alow": ["x"]}, "unknown setting plugins.service.alow (did you mean 'allow'?)"),
    ({"allow": ["bad name"]}, "plugins.service.allow: bad value"),
    ({"provider": "upstart"}, "expected one of auto, systemd, sysv, simulated"),
    ({"command_timeout": 0}, "expected a positive number"),
    ({"confirm_above": -1}, "expected a whole number"),
    ({"command_timeout": 60}, "must be below the action's 60 s deadline"),
])
def test_config_errors_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        ServicePluginConfig.from_section(section)
    assert message in str(caught.value)


def test_the_deadline_the_settings_check_is_the_ddls() -> None:
    from orch_service.config import ACTION_TIMEOUT

    assert ServiceAgent.ddl().timeout == ACTION_TIMEOUT
