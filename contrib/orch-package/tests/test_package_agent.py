"""The package agent on simulated nodes (orch.testing fleets, signed end to end), its
settings, and the CLI's summaries and questions."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from orch.core.errors import ArgumentError, ConfigError
from orch.testing import OrchFleet, assert_all_ok, data_by_node

from orch_package.agent import PackageAgent, SimulatedPackageAgent
from orch_package.config import PackagePluginConfig
from orch_package.lock import Busy, one_at_a_time
from orch_package.simulated import RELEASES, SimulatedProvider, latest

Start = Callable[..., OrchFleet]
NODES = {f"web-{i:02d}": {"role": "web"} for i in range(1, 9)}
NEWEST = latest("openssl")


def test_status_gives_a_version_distribution(package_fleet: Start) -> None:
    fleet = package_fleet(NODES, ["nginx"])
    result = fleet.call("package", "status", package="openssl")
    assert_all_ok(result)
    versions = {d["ensure"] for d in data_by_node(result).values()}
    assert versions <= {v for v, _ in RELEASES["openssl"]}
    absent = fleet.call("package", "status", package="htop")
    assert {d["ensure"] for d in data_by_node(absent).values()} == {"absent"}


def test_install_update_uninstall_change_the_state(package_fleet: Start) -> None:
    fleet = package_fleet({"n1": {}})
    installed = fleet.call("package", "install", package="nginx", version="1.22.1-9")
    assert_all_ok(installed)
    assert installed.replies["n1"].data["ensure"] == "1.22.1-9"
    assert installed.replies["n1"].data["changed"] is True
    outdated = fleet.call("package", "outdated", package="nginx")
    assert outdated.replies["n1"].data["candidate"] == "1.24.0-1"
    updated = fleet.call("package", "update", package="nginx")
    assert updated.replies["n1"].data["ensure"] == "1.24.0-1"
    same = fleet.call("package", "install", package="nginx")
    assert same.replies["n1"].data["changed"] is False
    removed = fleet.call("package", "uninstall", package="nginx")
    assert removed.replies["n1"].data["ensure"] == "absent"
    update_absent = fleet.call("package", "update", package="nginx")
    assert "not installed; install it first" in update_absent.replies["n1"].statusmsg


def test_count_and_md5_show_drift(package_fleet: Start) -> None:
    fleet = package_fleet({"a": {}, "b": {}})
    fleet.call("package", "update", package="openssl")
    same = fleet.call("package", "md5")
    assert len({d["md5"] for d in data_by_node(same).values()}) in (1, 2)
    fleet.call("package", "install", package="htop", nodes=["a"])  # not in the repository
    fleet.call("package", "install", package="nginx", nodes=["a"])
    drift = fleet.call("package", "md5")
    assert len({d["md5"] for d in data_by_node(drift).values()}) == 2
    counts = data_by_node(fleet.call("package", "count"))
    assert counts["a"]["count"] == counts["b"]["count"] + 1


def test_changes_are_refused_until_allowed(package_fleet: Start) -> None:
    fleet = package_fleet({"n1": {}}, allow=[])
    refused = fleet.call("package", "install", package="nginx")
    assert "add 'nginx' (or 'all') to plugins.package.allow" in \
        refused.replies["n1"].statusmsg
    assert_all_ok(fleet.call("package", "status", package="nginx"))
    denied = package_fleet({"n1": {}}, allow="all", deny=["openssl"]).call(
        "package", "update", package="openssl")
    assert "denied on this node" in denied.replies["n1"].statusmsg


@pytest.mark.parametrize(("args"), [{"package": "-oAPT::x=1"}, {"package": "a b"},
                                    {"package": "../x"},
                                    {"package": "nginx", "version": "--reinstall"},
                                    {"package": "nginx", "version": "1 2"}])
def test_bad_names_and_versions_never_leave_the_client(package_fleet: Start,
                                                       args: dict[str, Any]) -> None:
    fleet = package_fleet({"n1": {}})
    with pytest.raises(ArgumentError):
        fleet.call("package", "install", args)


def test_operations_on_one_node_run_one_at_a_time() -> None:
    lock = threading.Lock()
    with one_at_a_time(lock, 1.0), pytest.raises(Busy, match="another orch package action"), \
            one_at_a_time(lock, 0.01):
        pass


def test_simulated_fleet_is_deterministic_and_mixed() -> None:
    versions = [SimulatedProvider(f"n{i}", []).status("openssl").ensure for i in range(500)]
    assert len(set(versions)) == 3
    assert versions == [SimulatedProvider(f"n{i}", []).status("openssl").ensure
                        for i in range(500)]


def test_the_deadline_the_settings_check_is_the_ddls() -> None:
    from orch_package.config import ACTION_TIMEOUT

    assert PackageAgent.ddl().timeout == ACTION_TIMEOUT


def test_the_real_agent_is_never_simulation_safe() -> None:
    assert PackageAgent.simulation_safe is False
    assert SimulatedPackageAgent.simulation_safe is True
    assert PackageAgent.simulation() is SimulatedPackageAgent


@pytest.mark.parametrize(("section", "message"), [
    ({"alow": ["x"]}, "unknown setting 'plugins.package.alow' (did you mean 'allow'?)"),
    ({"allow": ["bad name"]}, "bad value ['bad name'] for 'plugins.package.allow'"),
    ({"provider": "yum"}, "expected one of auto, apt, simulated"),
    ({"apt_options": ["-x"]}, "is not KEY=VALUE"),
    ({"lock_wait": "soon"}, "expected a positive number"),
    ({"command_timeout": 300}, "must be below the action's 300 s deadline"),
])
def test_config_errors_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PackagePluginConfig.from_section(section)
    assert message in str(caught.value)


# -- the CLI ------------------------------------------------------------------------------


def test_cli_version_distribution(package_fleet: Start) -> None:
    fleet = package_fleet(NODES, ["nginx"])
    fleet.call("package", "install", package="nginx", version="1.22.1-9",
               nodes=["web-03", "web-07"])
    result = fleet.run_cli("package", "nginx", "status")
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("nginx: "))
    assert "1.22.1-9: 2 nodes (web-03, web-07)" in line or line.startswith("nginx: 1.22.1-9")


def test_cli_update_in_batches_and_uninstall_asks(package_fleet: Start) -> None:
    fleet = package_fleet(NODES, ["nginx"])
    # orch's shared --batch (3, 3 and 2 nodes): one merged result, one summary
    updated = fleet.run_cli("package", "openssl", "update", "--batch", "3",
                            "--batch-sleep", "0")
    assert updated.exit_code == 0, updated.output
    assert f"openssl: {NEWEST}: 8 nodes" in updated.output
    assert "Finished processing 8 / 8 hosts" in updated.output
    refused = fleet.run_cli("package", "nginx", "uninstall", input="n\n")
    assert refused.exit_code == 1 and "uninstall nginx on 8 nodes?" in refused.output
    document = json.loads(fleet.run_cli("package", "nginx", "status", "--json").stdout)
    assert "absent" not in document["summary"]["ensure"]
    limited = fleet.run_cli("package", "nginx", "uninstall", "--limit", "25%", input="n\n")
    assert limited.exit_code == 1 and "uninstall nginx on 2 nodes?" in limited.output
    agreed = fleet.run_cli("package", "nginx", "uninstall", "--yes", "--limit", "2")
    assert agreed.exit_code == 0 and "nginx: absent: 2 nodes" in agreed.output
    assert "--limit left out 6 matching node(s)" in agreed.output


def test_cli_fleet_actions(package_fleet: Start) -> None:
    fleet = package_fleet(NODES, ["nginx"])
    md5 = fleet.run_cli("package", "md5")
    assert md5.exit_code == 0 and "different package set(s)" in md5.output
    outdated = fleet.run_cli("package", "openssl", "outdated")
    assert outdated.exit_code == 0 and "outdated on" in outdated.output
    assert fleet.run_cli("package", "count").exit_code == 0


@pytest.mark.parametrize(("words", "message"), [
    (["openssl"], "expected orch package NAME"),
    (["openssl", "purge"], "'purge' is not one of"),
    (["open ssl", "status"], "is not a package name"),
    (["openssl", "status", "1.0"], "only install and update take a VERSION"),
    (["openssl", "install", "1 0"], "is not a version"),
])
def test_cli_bad_input_is_a_usage_error(package_fleet: Start, words: list[str],
                                        message: str) -> None:
    fleet = package_fleet({"n1": {}})
    result = fleet.run_cli("package", *words)
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_section_is_declared_to_orch_and_checked_at_start() -> None:
    """``orch_settings`` declares ``plugins.package``: ``orch server``'s start-up check
    (``check_settings``) refuses a typo before any package action runs."""
    from orch.core.config import Settings
    from orch.core.plugins import PluginRegistry

    registry = PluginRegistry.from_entry_points()
    assert registry.settings_sections()["package"] is PackagePluginConfig
    typo = Settings().with_values({"plugins": {"package": {"lock_wiat": 3}}}, "server.yaml")
    with pytest.raises(ConfigError, match="did you mean 'lock_wait'"):
        registry.check_settings(typo)
