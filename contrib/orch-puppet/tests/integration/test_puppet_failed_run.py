"""A real failed Puppet run is reported as failed (issue 8, item 14).

Two real ``puppet agent``s with certificates from a throw-away CA point at a server that
is not there; ``orch server`` processes beside them, the CLI signed with a client
certificate. ``runall`` used to say "2 finished" and exit 0, ``summary`` counted no
failure, and ``last_run_summary`` showed "0 resources, 0 changed, 0 failed".
"""

from __future__ import annotations

from puppet_fleet import UNREACHABLE, PuppetFleet


def test_runall_reports_runs_without_a_catalog_as_failed(
        unreachable_fleet: PuppetFleet) -> None:
    fleet = unreachable_fleet
    result = fleet.orch("puppet", "runall", "2", "--poll-interval", "0.5")
    assert result.rc == 1, result.describe()
    tally = next(line for line in result.stdout.splitlines() if line.startswith("Finished"))
    assert tally.endswith("s: 2 run failed"), result.describe()  # not "2 finished"
    for name in UNREACHABLE:
        assert f"run_failed       {name}: run FAILED: no catalog" in result.stdout
        summary = fleet.nodes[name].agent.lastrunfile.read_text()
        assert "config: \n" in summary or "config:\n" in summary  # Puppet's own file

    document = fleet.orch("puppet", "runall", "2", "--json", "--poll-interval", "0.5")
    assert document.rc == 1 and document.json()["nodes"]["run_failed"] == list(UNREACHABLE)


def test_summary_status_and_last_run_summary_say_failed(
        unreachable_fleet: PuppetFleet) -> None:
    fleet = unreachable_fleet
    for name in UNREACHABLE:  # each has a failed last run (this test may run alone)
        if not fleet.status(name)["lastrun"]:
            assert fleet.orch("puppet", "runonce", "--wait", "-I", name).rc == 1
    summary = fleet.orch("puppet", "summary")
    assert f"failed last runs: {len(UNREACHABLE)} ({len(UNREACHABLE)} without a catalog)" \
        in summary.stdout, summary.describe()
    document = fleet.orch("puppet", "summary", "--json").json()
    assert set(document["failed_runs"]) == set(UNREACHABLE)
    assert all(why.startswith("no catalog: Could not retrieve catalog")
               for why in document["failed_runs"].values()), document["failed_runs"]

    status = fleet.orch("puppet", "status")
    assert status.stdout.count("FAILED (no catalog)") == len(UNREACHABLE), status.describe()
    count = fleet.orch("puppet", "count", "--json").json()
    assert count["last_run_failed"] == len(UNREACHABLE)

    last = fleet.orch("puppet", "last_run_summary")
    assert last.stdout.count("run FAILED (no catalog: Could not retrieve catalog") == \
        len(UNREACHABLE), last.describe()
    assert "0 resources, 0 changed, 0 failed" not in last.stdout
    data = fleet.orch("puppet", "last_run_summary", "--json", "-I",
                      UNREACHABLE[0]).json()["replies"][0]["data"]
    assert data["run_status"] == "failed" and data["config_version"] == ""
    assert data["cached_catalog_status"] == "not_used"


def test_runonce_wait_exits_1(unreachable_fleet: PuppetFleet) -> None:
    result = unreachable_fleet.orch("puppet", "runonce", "--wait", "-I", UNREACHABLE[0])
    assert result.rc == 1, result.describe()
    assert "1 run failed" in result.stdout
