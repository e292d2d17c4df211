"""Pure pieces: settings, path discovery, Puppet's state files, input checks, run argv,
fleet summaries. Real Puppet file formats are used verbatim (from Puppet 7.23 runs)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakepuppet import REAL_REPORT, REAL_SUMMARY, puppet_like_process, summary_document
from hypothesis import given, settings
from hypothesis import strategies as st
from orch.core.errors import ConfigError

from orch_puppet import paths as paths_mod
from orch_puppet import state
from orch_puppet.config import PuppetPluginConfig, expand
from orch_puppet.paths import AIO_LAYOUT, DEBIAN_LAYOUT, PathResolver, default_paths, resolve
from orch_puppet.runs import effective_splay, run_argv
from orch_puppet.summary import Counts, FleetSummary, histogram, human, sparkline
from orch_puppet.validation import (
    InvalidInput,
    check_server,
    check_tags,
    resource_request,
    run_options,
)

# -- settings ------------------------------------------------------------------------------


def test_defaults_deny_every_resource_type() -> None:
    config = PuppetPluginConfig.from_section({})
    allowed, why = config.allows_type("file")
    assert not allowed and "allows no resource types" in why
    assert not config.facts_enabled  # nodes without Puppet never run facter


def test_allow_and_deny_lists() -> None:
    config = PuppetPluginConfig.from_section(
        {"resource_types_allow": "file, Service", "resource_types_deny": ["exec"]})
    assert config.allows_type("service") == (True, "")
    assert not config.allows_type("package")[0]
    everything = PuppetPluginConfig.from_section(
        {"resource_types_allow": ["all"], "resource_types_deny": ["exec"]})
    assert everything.allows_type("package")[0]
    allowed, why = everything.allows_type("exec")
    assert not allowed and "denied" in why


def test_unknown_and_bad_keys_name_themselves() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.puppet\.resource_type_allow.*"
                                          r"did you mean 'resource_types_allow'"):
        PuppetPluginConfig.from_section({"resource_type_allow": ["file"]})
    with pytest.raises(ConfigError, match=r"plugins\.puppet\.facts_refresh_interval"):
        PuppetPluginConfig.from_section({"facts_refresh_interval": -1})
    with pytest.raises(ConfigError, match="facts_command"):
        PuppetPluginConfig.from_section({"facts_command": "ohai"})


def test_paths_and_identity_templates() -> None:
    config = PuppetPluginConfig.from_section(
        {"statedir": "/srv/{identity}/state", "confdir": "/srv/{identity}/conf"})
    assert config.paths == {"statedir": "/srv/{identity}/state"}
    assert expand(config.confdir, "web1") == "/srv/web1/conf"
    assert expand("/x/{other}", "web1") == "/x/{other}"  # nothing else is interpreted


# -- paths ---------------------------------------------------------------------------------


def test_default_layouts() -> None:
    debian = default_paths(DEBIAN_LAYOUT)
    assert debian["lastrunfile"] == "/var/cache/puppet/public/last_run_summary.yaml"
    assert debian["agent_disabled_lockfile"] == "/var/cache/puppet/state/agent_disabled.lock"
    assert debian["classfile"] == "/var/cache/puppet/state/classes.txt"
    assert debian["pidfile"] == "/run/puppet/agent.pid"
    aio = default_paths(AIO_LAYOUT)
    assert aio["agent_catalog_run_lockfile"] == \
        "/opt/puppetlabs/puppet/cache/state/agent_catalog_run.lock"
    assert aio["lastrunfile"] == "/opt/puppetlabs/puppet/public/last_run_summary.yaml"


def test_overridden_base_carries_its_children() -> None:
    printed = default_paths(DEBIAN_LAYOUT) | {"vardir": "/printed/var"}
    result = resolve("/usr/bin/puppet", None, "debian", DEBIAN_LAYOUT, printed,
                     {"vardir": "/sim/n1", "classfile": "/elsewhere/classes.txt"}, None, "t")
    assert result["statedir"] == Path("/sim/n1/state")
    assert result["agent_catalog_run_lockfile"] == Path("/sim/n1/state/agent_catalog_run.lock")
    assert result["lastrunfile"] == Path("/sim/n1/public/last_run_summary.yaml")
    assert result["classfile"] == Path("/elsewhere/classes.txt")
    assert result["pidfile"] == Path("/run/puppet/agent.pid")  # rundir untouched


def test_printed_values_win_over_defaults() -> None:
    printed = {"lastrunfile": "/custom/summary.yaml", "statedir": "/custom/state"}
    result = resolve("/usr/bin/puppet", "/etc/x", "debian", DEBIAN_LAYOUT, printed, {},
                     1800, "puppet config print")
    assert result["lastrunfile"] == Path("/custom/summary.yaml")
    # A printed statedir is Puppet's answer: children not printed keep the printed/default.
    assert result["statedir"] == Path("/custom/state")
    assert result.confdir_args() == ["--confdir", "/etc/x"]
    assert result.splaylimit == 1800


def _fake_puppet_printing(tmp_path: Path, document: dict[str, object], rc: int = 0) -> Path:
    script = tmp_path / "puppet"
    script.write_text(f"#!{sys.executable}\nimport sys, json\n"
                      f"open({str(tmp_path / 'argv')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
                      f"print(json.dumps({document!r}))\nsys.exit({rc})\n")
    script.chmod(0o755)
    return script


def test_config_print_is_asked_once_per_confdir(tmp_path: Path) -> None:
    paths_mod.forget_cache()
    script = _fake_puppet_printing(tmp_path, {
        "vardir": "/v", "statedir": "/v/st", "publicdir": "/v/pub", "rundir": "/r",
        "logdir": "/l", "lastrunfile": "/v/pub/last_run_summary.yaml", "splaylimit": 600})
    config = PuppetPluginConfig.from_section({"puppet_bin": str(script), "confdir": "/c"})
    first = PathResolver(config, "n1").get()
    assert first.source == "puppet config print"
    assert first["statedir"] == Path("/v/st")
    assert first["agent_disabled_lockfile"] == Path("/v/st/agent_disabled.lock")
    assert first.splaylimit == 600
    argv = json.loads((tmp_path / "argv").read_text())
    assert argv[:6] == ["config", "print", "--render-as", "json", "--section", "agent"]
    assert argv[6:8] == ["--confdir", "/c"]
    (tmp_path / "argv").unlink()
    PathResolver(config, "n2").get()
    assert not (tmp_path / "argv").exists()  # the cached answer was used
    paths_mod.forget_cache()


def test_config_print_failure_falls_back_to_the_layout(tmp_path: Path) -> None:
    paths_mod.forget_cache()
    script = _fake_puppet_printing(tmp_path, {}, rc=3)
    config = PuppetPluginConfig.from_section({"puppet_bin": str(script)})
    result = PathResolver(config, "n1").get()
    assert result.source.startswith("defaults (puppet config print failed")
    assert result["lastrunfile"] == Path("/var/cache/puppet/public/last_run_summary.yaml")
    paths_mod.forget_cache()


def test_missing_puppet_is_reported(tmp_path: Path) -> None:
    config = PuppetPluginConfig.from_section({"puppet_bin": str(tmp_path / "nope")})
    result = PathResolver(config, "n1").get()
    assert result.puppet_bin is None and "not installed" in result.source
    with pytest.raises(paths_mod.PuppetNotInstalled, match="puppet_bin"):
        result.require_puppet()


# -- state files ---------------------------------------------------------------------------


def test_disable_lock_round_trip_in_puppets_format(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "agent_disabled.lock"
    assert state.read_disabled(lock) is None
    state.write_disabled(lock, "maintenance 'db'")
    assert json.loads(lock.read_text()) == {"disabled_message": "maintenance 'db'"}
    assert state.read_disabled(lock) == "maintenance 'db'"
    assert state.remove_disabled(lock) and not state.remove_disabled(lock)
    lock.write_text("")  # an empty lock (old Puppet, or `touch`) still means disabled
    assert state.read_disabled(lock) == state.NO_REASON
    lock.write_text("plain text reason\n")
    assert state.read_disabled(lock) == "plain text reason"


def test_run_lock_must_name_a_live_puppet_process(tmp_path: Path) -> None:
    lock = tmp_path / "agent_catalog_run.lock"
    assert state.live_puppet_pid(lock) is None
    lock.write_text(str(os.getpid()))  # alive, but pytest is not puppet
    assert state.live_puppet_pid(lock) is None
    proc = puppet_like_process(tmp_path / "bin")
    try:
        lock.write_text(str(proc.pid))
        assert state.live_puppet_pid(lock) == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert state.live_puppet_pid(lock) is None  # stale lock after a crash
    lock.write_text("garbage")
    assert state.live_puppet_pid(lock) is None


def test_real_summary_and_report(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(REAL_SUMMARY)
    (tmp_path / "r.yaml").write_text(REAL_REPORT)
    summary = state.read_summary(tmp_path / "s.yaml")
    report = state.read_report(tmp_path / "r.yaml")
    assert report is not None and report["status"] == "changed"
    data = state.RunSummary.build(summary, 1795676806, report, {"file": 2, "exec": 1}).data
    assert data["total_resources"] == 11 and data["changed_resources"] == 2
    assert data["out_of_sync_resources"] == 2 and data["corrected_resources"] == 1
    assert data["failed_resources"] == 0
    assert data["config_version"] == "1795676793"
    assert data["lastrun"] == 1795676796 and data["since_lastrun"] == 10
    assert data["config_retrieval_time"] == 0.254 and data["total_time"] == 3.591
    assert data["type_distribution"] == {"file": 2, "exec": 1}
    assert data["run_status"] == "changed" and data["cached_catalog_status"] == "not_used"
    assert [log["level"] for log in data["logs"]] == ["info", "notice"]
    assert data["logs"][1]["source"].endswith("/returns")


def test_never_ran_and_broken_files(tmp_path: Path) -> None:
    assert state.read_summary(tmp_path / "absent.yaml") == {}
    data = state.RunSummary.build({}, time.time()).data
    assert data["lastrun"] == 0 and data["since_lastrun"] is None
    (tmp_path / "bad.yaml").write_text("resources: [unclosed\n")
    assert state.read_summary(tmp_path / "bad.yaml") == {}
    # A failed compile: empty config version, zero counts (as Puppet writes it).
    failed = summary_document(1795000000, total=0)
    failed["version"]["config"] = None
    assert state.RunSummary.build(failed, 1795000010).data["config_version"] == ""


def test_resources_file(tmp_path: Path) -> None:
    path = tmp_path / "resources.txt"
    path.write_text("File[/tmp/a]\nfile[/tmp/b]\nexec[role::web slow step]\n"
                    "notify[role::web applied]\nnot a resource\n")
    assert state.type_distribution(path) == {"exec": 1, "file": 2, "notify": 1}
    assert "file[/tmp/a]" in state.managed_resources(path)


def test_status_messages() -> None:
    assert state.describe_age(0) == "0 seconds"
    assert state.describe_age(132) == "2 minutes 12 seconds"
    assert state.describe_age(3 * 86400 + 7200 + 5) == "3 days 2 hours"
    assert state.status_message("idling", 1000, 1061, "") == \
        "Currently idling; last completed run 1 minute 1 second ago"
    assert state.status_message("disabled", 0, 5, "maintenance") == \
        "Currently disabled (maintenance); never completed a run"


# -- inputs --------------------------------------------------------------------------------


def test_run_options_accept_what_puppet_accepts() -> None:
    options = run_options({"tags": "role::web, ntp", "skip_tags": "slow",
                           "environment": "feature_x", "server": "puppet.example.com:8141",
                           "noop": True, "splaylimit": 30})
    assert options.tags == ("role::web", "ntp") and options.skip_tags == ("slow",)
    assert options.server == ("puppet.example.com", 8141)
    assert options.custom


@pytest.mark.parametrize("data, problem", [
    ({"tags": "a;rm -rf /"}, "tags"),
    ({"tags": "$(reboot)"}, "tags"),
    ({"skip_tags": "a b"}, "skip_tags"),
    ({"environment": "Prod-1"}, "environment"),
    ({"environment": "../etc"}, "environment"),
    ({"server": "host:99999"}, "port"),
    ({"server": "-oProxyCommand=x"}, "server"),
    ({"server": "a b"}, "server"),
    ({"splaylimit": 0}, "splaylimit"),
    ({"noop": "yes"}, "noop"),
    ({"bogus": 1}, "unknown"),
])
def test_run_options_refuse_anything_else(data: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        run_options(data)


def test_tags_and_server_helpers() -> None:
    assert check_tags("tags", "a,b::c") == ["a", "b::c"]
    assert check_server("localhost") == ("localhost", None)
    with pytest.raises(InvalidInput):
        check_server("x:0")


def test_resource_inputs() -> None:
    wanted = resource_request({"type": "file", "name": "/tmp/x y",
                               "properties": {"ensure": "file", "mode": "0644",
                                              "backup": False, "groups": ["a", "b"]}})
    assert wanted.type == "file" and wanted.ref == "file[/tmp/x y]"
    # Types in any case, as Puppet writes them (File, Apache::Vhost): mco habit.
    assert resource_request({"type": "Apache::Vhost", "name": "x"}).type == "apache::vhost"
    for bad, problem in [
        ({"type": "file;rm", "name": "x"}, "type"),
        ({"type": "1file", "name": "x"}, "type"),
        ({"type": "file", "name": ""}, "name"),
        ({"type": "file", "name": "a\nb"}, "control"),
        ({"type": "file", "name": "x", "properties": {"Ensure": "file"}}, "property name"),
        ({"type": "file", "name": "x", "properties": {"content": {"a": 1}}}, "values"),
        ({"type": "file", "name": "x", "properties": ["ensure=file"]}, "hash"),
    ]:
        with pytest.raises(InvalidInput, match=problem):
            resource_request(bad)


# -- the run command line ------------------------------------------------------------------


def _paths(splaylimit: int | None = None) -> paths_mod.PuppetPaths:
    return resolve("/usr/bin/puppet", "/etc/puppet", "debian", DEBIAN_LAYOUT, {}, {},
                   splaylimit, "test")


def test_run_argv_maps_every_input() -> None:
    config = PuppetPluginConfig.from_section({})
    argv = run_argv("/usr/bin/puppet", _paths(), run_options(
        {"noop": False, "tags": "a,b", "skip_tags": "c", "environment": "dev",
         "server": "ps:8141", "use_cached_catalog": False}), config)
    assert argv[:4] == ["/usr/bin/puppet", "agent", "--confdir", "/etc/puppet"]
    assert {"--onetime", "--no-daemonize", "--no-splay", "--no-noop", "--no-usecacheonfailure",
            "--no-use_cached_catalog"} <= set(argv)
    joined = " ".join(argv)
    assert "--tags a,b" in joined and "--skip_tags c" in joined
    assert "--environment dev" in joined and "--server ps" in joined
    assert "--serverport 8141" in joined and "--server_list ps:8141" in joined


def test_splay_force_and_cache_defaults() -> None:
    splaying = PuppetPluginConfig.from_section({"splay": True})
    assert effective_splay(run_options({}), splaying)
    assert not effective_splay(run_options({"force": True}), splaying)
    argv = run_argv("puppet", _paths(splaylimit=1800), run_options({}), splaying)
    assert "--splay" in argv and argv[argv.index("--splaylimit") + 1] == "1800"
    cached = run_argv("puppet", _paths(), run_options({"use_cached_catalog": True}),
                      PuppetPluginConfig.from_section({}))
    assert "--use_cached_catalog" in cached and "--no-usecacheonfailure" not in cached
    allowed = run_argv("puppet", _paths(), run_options({}),
                       PuppetPluginConfig.from_section({"usecacheonfailure": True}))
    assert "--no-usecacheonfailure" not in allowed


# -- fleet summaries -----------------------------------------------------------------------


def test_histograms() -> None:
    assert histogram([]) == [] and sparkline([]) == ""
    counts = histogram([0, 0, 0, 10], buckets=4)
    assert counts == [3, 0, 0, 1]
    assert sparkline(counts) == "█▁▁▃"
    assert histogram([5, 5, 5], buckets=3) == [3, 0, 0]
    assert human(1800) == "1.8k" and human(2.5) == "2.50" and human(3.0) == "3"


def test_counts_and_fleet_summary() -> None:
    statuses = {
        "a": {"enabled": True, "applying": True, "daemon_present": True, "idling": False,
              "status": "applying", "lastrun": 100, "since_lastrun": 50},
        "b": {"enabled": False, "applying": False, "daemon_present": False, "idling": False,
              "status": "disabled", "lastrun": 100, "since_lastrun": 9000},
        "c": {"enabled": True, "applying": False, "daemon_present": True, "idling": True,
              "status": "idling", "lastrun": 0, "since_lastrun": None},
    }
    counts = Counts.of(statuses)
    assert (counts.total, counts.enabled, counts.disabled, counts.applying, counts.idling,
            counts.daemon_present, counts.stopped) == (3, 2, 1, 1, 1, 2, 1)
    assert counts.lines()[0] == "Total Puppet nodes: 3"
    summaries = {
        "a": {"lastrun": 100, "failed_resources": 2, "total_resources": 10, "total_time": 3.0},
        "b": {"lastrun": 100, "failed_resources": 0, "total_resources": 30, "total_time": 9.0},
        "c": {"lastrun": 0, "failed_resources": 0},
    }
    fleet = FleetSummary.of(statuses, summaries, stale_after=3600)
    assert fleet.stale == ["b", "c"] and fleet.never_ran == ["c"]
    assert fleet.failed == {"a": 2}
    document = fleet.to_json()
    assert document["distributions"]["total_resources"]["min"] == 10
    assert document["distributions"]["total_resources"]["count"] == 2  # c never ran
    assert any("Total resources" in line for line in fleet.lines())


def test_discovery_can_wait_for_the_first_action(tmp_path: Path) -> None:
    paths_mod.forget_cache()
    script = _fake_puppet_printing(tmp_path, {"vardir": "/lazy"})
    config = PuppetPluginConfig.from_section({"puppet_bin": str(script),
                                              "discover_at_start": False})
    resolver = PathResolver(config, "n1")
    # Nothing was started at construction (so nothing can finish later and prove us wrong).
    assert resolver._future is None and not (tmp_path / "argv").exists()
    assert resolver.get()["statedir"] == Path("/lazy/state")
    assert (tmp_path / "argv").exists()
    paths_mod.forget_cache()


# -- how a run ended (issue 8, item 14) ----------------------------------------------------


def test_a_run_without_a_catalog_is_failed(tmp_path: Path) -> None:
    """The summary Puppet 7.23 wrote for a run against an unreachable server (verified)."""
    failed = summary_document(1796067582, total=0, config_retrieval=0)
    failed["version"]["config"] = None
    assert state.run_outcome(failed) == state.RunOutcome("failed", "no catalog")
    report = {"status": "failed", "cached_catalog_status": "not_used", "logs": [
        {"level": "warning", "message": "Unable to fetch my node definition"},
        {"level": "err", "message": "Connection to https://127.0.0.1:1/puppet/v3 failed"},
        {"level": "err", "message": "Could not retrieve catalog from remote server: No more "
                                    "routes to puppet"},
        {"level": "err", "message": "Could not retrieve catalog; skipping run"}]}
    outcome = state.run_outcome(failed, report)
    assert outcome.failure == ("no catalog: Could not retrieve catalog from remote server: "
                               "No more routes to puppet")
    data = state.RunSummary.build(failed, 1796067600, report).data
    assert data["run_status"] == "failed" and data["run_failure"] == outcome.failure
    assert state.status_message("stopped", 1796067582, 1796067600, "", outcome) == \
        ("Currently stopped; last run 18 seconds ago FAILED (no catalog: Could not retrieve "
         "catalog from remote server: No more routes to puppet)")


def test_other_outcomes() -> None:
    assert state.run_outcome({}) == state.NEVER_RAN
    assert state.run_outcome(summary_document(5, changed=2)).status == "changed"
    assert state.run_outcome(summary_document(5)).status == "unchanged"
    assert state.run_outcome(summary_document(5, failed=1)) == \
        state.RunOutcome("failed", "1 failed resource")
    cached = state.run_outcome(summary_document(5), {"status": "unchanged",
                                                     "cached_catalog_status": "on_failure"})
    assert cached.failed and "cached catalog" in cached.failure
    assert state.run_outcome(summary_document(5), {"status": "failed"}).failed


@settings(max_examples=200, deadline=None)
@given(config=st.one_of(st.none(), st.just(""), st.integers(1, 2**31)),
       failed=st.integers(0, 5), restart=st.integers(0, 3), changed=st.integers(0, 9),
       status=st.sampled_from([None, "changed", "unchanged", "failed"]))
def test_run_outcome_never_calls_a_failure_a_success(config: Any, failed: int, restart: int,
                                                     changed: int, status: Any) -> None:
    summary = summary_document(5, failed=failed, changed=changed)
    summary["version"]["config"] = config
    summary["resources"]["failed_to_restart"] = restart
    report = {"status": status} if status else None
    outcome = state.run_outcome(summary, report)
    broken = not config or failed or restart or status == "failed"
    assert outcome.failed == bool(broken)
    assert bool(outcome.failure) == outcome.failed


def test_fleet_views_count_failed_runs_and_missing_puppet_apart() -> None:
    statuses = {
        "ok": {"enabled": True, "lastrun": 10, "since_lastrun": 5, "status": "stopped",
               "last_run_status": "changed", "installed": True},
        "bad": {"enabled": True, "lastrun": 10, "since_lastrun": 5, "status": "stopped",
                "last_run_status": "failed", "last_run_failure": "no catalog"},
        "none": {"enabled": False, "lastrun": 0, "status": "not installed",
                 "installed": False},
    }
    counts = Counts.of(statuses)
    assert (counts.total, counts.enabled, counts.last_run_failed, counts.not_installed) == \
        (2, 2, 1, 1)
    summaries = {"ok": {"lastrun": 10, "total_resources": 40, "total_time": 3.0,
                        "run_status": "changed"},
                 "bad": {"lastrun": 10, "total_resources": 0, "total_time": 1.5,
                         "run_status": "failed", "run_failure": "no catalog: unreachable"}}
    fleet = FleetSummary.of(statuses, summaries, 3600)
    assert fleet.failed_runs == {"bad": "no catalog: unreachable"}
    assert fleet.not_installed == ["none"] and fleet.never_ran == []
    by_label = {d.label: d.values for d in fleet.distributions}
    assert by_label["Total resources"] == (40.0,)  # no catalog: not "0 resources"
    assert by_label["Total run-time (s)"] == (3.0, 1.5)
    assert "   failed last runs: 1 (1 without a catalog)" in fleet.lines()
