"""The helpers orch-service and orch-package used to copy: allow lists and fleet summaries."""

from __future__ import annotations

import pytest

from orch.plugin import allow_decision, convert, needs_confirmation, output

names = convert.names_or_all("service name", lambda n: n.isalnum(), "letters and digits")


def test_names_or_all_takes_lists_and_comma_strings() -> None:
    assert names(None) == ()
    assert names("nginx, cron,") == ("nginx", "cron")
    assert names(["all"]) == ("all",)


@pytest.mark.parametrize(("value", "message"), [
    (3, "expected a list of service names or 'all'"),
    (["ok", "b-d"], "'b-d' is not a service name (letters and digits)"),
])
def test_names_or_all_says_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        names(value)


def test_count_and_seconds_below() -> None:
    assert convert.count("3") == 3
    with pytest.raises(ValueError, match="whole number"):
        convert.count(-1)
    with pytest.raises(ValueError, match="whole number"):
        convert.count(True)
    below = convert.seconds_below(60)
    assert below("59.5") == 59.5
    with pytest.raises(ValueError, match="below the action's 60 s deadline"):
        below(60)
    with pytest.raises(ValueError, match="positive number"):
        below(0)


def test_allow_decision_deny_wins_and_reasons_name_the_key() -> None:
    assert allow_decision("nginx", ("all",), (), noun="service", setting="plugins.service") \
        == (True, "")
    ok, why = allow_decision("sshd", ("all",), ("sshd",), noun="service",
                             setting="plugins.service")
    assert not ok and "plugins.service.deny" in why
    ok, why = allow_decision("nginx", (), (), noun="service", setting="plugins.service")
    assert not ok and "add 'nginx' (or 'all') to plugins.service.allow" in why
    ok, why = allow_decision("nginx", ("cron",), (), noun="service", setting="plugins.service")
    assert not ok and "(allowed: cron)" in why


def test_needs_confirmation() -> None:
    assert needs_confirmation(True, 2, 1, yes=False)
    assert not needs_confirmation(True, 2, 1, yes=True)
    assert not needs_confirmation(True, 1, 1, yes=False)
    assert not needs_confirmation(False, 9, 1, yes=False)


def test_summary_line_names_the_odd_ones_out() -> None:
    grouped = {"running": [f"web-{i:02}" for i in range(48)], "stopped": ["web-07", "web-19"]}
    assert output.summary_line(grouped) == "running: 48, stopped: 2 (web-07, web-19)"
    many = {"a": ["x"] * 20, "b": [f"n{i}" for i in range(12)]}
    assert output.summary_line(many).endswith("n9 and 2 more)")
    assert output.summary_line(grouped, False, " nodes") == "running: 48 nodes, stopped: 2 nodes"


ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def test_run_command_keeps_the_tail_of_the_output() -> None:
    from orch.plugin import run_command

    result = run_command(["sh", "-c", "printf 'head-'; printf 'x%.0s' $(seq 50); exit 3"], 10,
                         environment=ENV, limit=10)
    assert (result.returncode, result.output, result.ok) == (3, "x" * 10, False)


def test_run_command_stops_a_command_past_its_deadline() -> None:
    from orch.plugin import run_command

    result = run_command(["sleep", "30"], 0.2, environment=ENV)
    assert result.timed_out and not result.ok


def test_run_command_that_cannot_start_says_so() -> None:
    from orch.plugin import CommandError, run_command

    with pytest.raises(CommandError, match="cannot run /nonexistent/tool"):
        run_command(["/nonexistent/tool"], 1, environment=ENV)
