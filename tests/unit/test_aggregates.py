"""DDL aggregate summaries (:func:`orch.ddl.aggregate.summarize`) over fixed reply sets.

Replies are built directly as :class:`orch.core.protocol.Reply` objects; the actions come
from ``tests/unit/ddl_samples/good/`` or are declared inline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.errors import PluginError
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry
from orch.core.protocol import Reply, Status
from orch.ddl.aggregate import Aggregator, Summary, summarize
from orch.ddl.builtin import AGGREGATES
from orch.ddl.model import ActionDDL, AggregateDDL, OutputDDL, load_ddl

SAMPLES = Path(__file__).resolve().parent / "ddl_samples" / "good"
REPORT = load_ddl(SAMPLES / "ddltest.json").actions["report"]


def replies(*data: Mapping[str, Any], failed: Sequence[Mapping[str, Any]] = ()) -> list[Reply]:
    """OK replies carrying ``data`` (senders n0, n1, …), then failed ones (f0, f1, …)."""
    ok = [Reply("req", f"n{i}", "a", "act", Status.OK, "OK", dict(d))
          for i, d in enumerate(data)]
    bad = [Reply("req", f"f{i}", "a", "act", Status.ABORTED, "failed", dict(d))
           for i, d in enumerate(failed)]
    return ok + bad


def one(function: str, *args: Any, output: str = "v", label: str = "",
        functions: Mapping[str, Callable[..., Aggregator]] = AGGREGATES,
        data: Iterable[Any] = (), failed: Iterable[Any] = ()) -> Summary | None:
    """Summarize one aggregate over OK replies whose ``output`` takes each of ``data``."""
    act = ActionDDL("act", outputs={output: OutputDDL(output, display_as=label)},
                    aggregate=(AggregateDDL(function, output, tuple(args)),))
    summaries = summarize(act, replies(*({output: v} for v in data),
                                       failed=[{output: v} for v in failed]), functions)
    assert len(summaries) <= 1
    return summaries[0] if summaries else None


def result_of(function: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    summary = one(function, *args, **kwargs)
    assert summary is not None
    return dict(summary.result)


# --------------------------------------------------------------------------- summary


def test_one_summary_per_output_as_choria_keys_them() -> None:
    """Two aggregates over one output printed the summary twice; the later one wins."""
    act = ActionDDL("act", outputs={"v": OutputDDL("v"), "w": OutputDDL("w")},
                    aggregate=(AggregateDDL("summary", "v"), AggregateDDL("average", "w"),
                               AggregateDDL("sum", "v")))
    summaries = summarize(act, replies({"v": 1, "w": 2}, {"v": 3, "w": 4}), AGGREGATES)
    assert [(s.output, s.function) for s in summaries] == [("v", "sum"), ("w", "average")]


def test_summary_counts_each_value_most_common_first() -> None:
    summary = one("summary", data=["Debian", "RedHat", "Debian", "Alpine", "Debian", "RedHat"])
    assert summary is not None
    assert summary.result == {"counts": {"Debian": 3, "RedHat": 2, "Alpine": 1}}
    assert list(summary.result["counts"]) == ["Debian", "RedHat", "Alpine"]
    assert summary.lines == ("Debian = 3", "RedHat = 2", "Alpine = 1")


def test_summary_keys_non_strings_by_their_json() -> None:
    counts = result_of("summary", data=[1, 1, True, None, [1, 2], {"b": 1, "a": 2},
                                        {"a": 2, "b": 1}, "1"])["counts"]
    assert counts == {"1": 3, "true": 1, "null": 1, "[1, 2]": 1, '{"a": 2, "b": 1}': 2}


def test_summary_counts_a_missing_output_as_null() -> None:
    act = ActionDDL("act", outputs={"v": OutputDDL("v")},
                    aggregate=(AggregateDDL("summary", "v"),))
    [summary] = summarize(act, replies({"v": "x"}, {}, {"other": 1}), AGGREGATES)
    assert summary.result == {"counts": {"null": 2, "x": 1}}


def test_summary_accepts_a_choria_format_argument() -> None:
    assert result_of("summary", {"format": "%s"}, data=["a", "a"]) == {"counts": {"a": 2}}


def test_summary_of_no_replies() -> None:
    summary = one("summary")
    assert summary is not None
    assert summary.result == {"counts": {}} and summary.lines == ()


# --------------------------------------------------------------------------- boolean_summary


def test_boolean_summary_with_labels() -> None:
    summary = one("boolean_summary", {"true": "enabled", "false": "disabled"},
                  data=[True, True, False, True])
    assert summary is not None
    assert summary.result == {"counts": {"enabled": 3, "disabled": 1}}
    assert summary.lines == (" enabled = 3", "disabled = 1")


def test_boolean_summary_default_and_partial_labels() -> None:
    assert result_of("boolean_summary", data=[True, False, False]) == {
        "counts": {"false": 2, "true": 1}}
    assert result_of("boolean_summary", {"true": "on"}, data=[True, False]) == {
        "counts": {"on": 1, "false": 1}}


def test_boolean_summary_does_not_count_missing_values_as_false() -> None:
    """BUG (minor): ``BooleanSummaryAggregator.add`` labels every falsy value ``false``, so a
    node that did not return the output (``None``) is shown as "disabled". MCollective's
    boolean_summary kept such a value apart; the summary must not claim two more nodes are
    disabled than said so."""
    counts = result_of("boolean_summary", {"true": "enabled", "false": "disabled"},
                       data=[True, False, None, None])["counts"]
    assert counts.get("disabled") == 1, counts
    assert counts.get("enabled") == 1, counts


# --------------------------------------------------------------------------- average, sum


def test_average_and_sum_skip_non_numbers() -> None:
    data = [1, 2.5, "7", None, True, False, [3], {"n": 4}, 4.5]
    assert result_of("average", data=data) == {"value": 8 / 3, "count": 3, "skipped": 6}
    assert result_of("sum", data=data) == {"value": 8.0, "count": 3, "skipped": 6}
    average = one("average", data=data)
    total = one("sum", data=data)
    assert average is not None and total is not None
    assert average.lines == ("average 2.66667 over 3 node(s)",)
    assert total.lines == ("sum 8 over 3 node(s)",)


def test_average_and_sum_accept_a_choria_format_argument() -> None:
    assert result_of("average", {"format": "%.2f"}, data=[1, 2])["value"] == 1.5
    assert result_of("sum", {"format": "%d"}, data=[1, 2])["value"] == 3


def test_average_and_sum_without_numbers() -> None:
    assert result_of("average", data=["a", None]) == {"value": None, "count": 0, "skipped": 2}
    assert result_of("sum", data=["a"]) == {"value": 0, "count": 0, "skipped": 1}
    average = one("average", data=[])
    assert average is not None and average.lines == ("no numeric values",)


def test_average_of_negative_and_large_numbers() -> None:
    assert result_of("average", data=[-10, 10, 10**6])["value"] == pytest.approx(10**6 / 3)
    assert result_of("sum", data=[-1.5, -2.5])["value"] == -4.0


# --------------------------------------------------------------------------- histogram


def test_histogram_buckets() -> None:
    result = result_of("histogram", {"bins": 5}, data=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert result == {
        "buckets": [{"from": 0.0, "to": 2.0, "count": 2}, {"from": 2.0, "to": 4.0, "count": 2},
                    {"from": 4.0, "to": 6.0, "count": 2}, {"from": 6.0, "to": 8.0, "count": 2},
                    {"from": 8.0, "to": 10.0, "count": 3}],
        "skipped": 0}


def test_histogram_maximum_falls_in_the_last_bucket() -> None:
    result = result_of("histogram", {"bins": 3}, data=[1.0, 1.1, 2.0, 3.9, 4.0])
    assert [b["count"] for b in result["buckets"]] == [2, 1, 2]
    assert result["buckets"][0]["from"] == 1.0 and result["buckets"][-1]["to"] == 4.0


def test_histogram_default_bins_and_skipped_values() -> None:
    result = result_of("histogram", data=[*range(16), "x", None])
    assert len(result["buckets"]) == 8
    assert [b["count"] for b in result["buckets"]] == [2] * 8
    assert result["skipped"] == 2


def test_histogram_of_identical_values() -> None:
    result = result_of("histogram", {"bins": 4}, data=[5, 5, 5])
    assert [b["count"] for b in result["buckets"]] == [3, 0, 0, 0]
    assert result["buckets"][0]["from"] == 5.0


def test_histogram_lines_draw_bars_scaled_to_the_peak() -> None:
    summary = one("histogram", {"bins": 2}, data=[0, 0, 0, 0, 10, 10])
    assert summary is not None
    first, second = summary.lines
    assert first.count("#") == 30 and first.endswith(" 4")
    assert second.count("#") == 15 and second.endswith(" 2")


def test_histogram_without_numbers_is_empty() -> None:
    summary = one("histogram", data=["a"])
    assert summary is not None
    assert summary.result == {"buckets": [], "skipped": 1} and summary.lines == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000), max_size=50),
       st.integers(1, 12))
def test_histogram_counts_every_number_once(values: list[float], bins: int) -> None:
    result = result_of("histogram", {"bins": bins}, data=values)
    assert sum(b["count"] for b in result["buckets"]) == len(values)
    assert len(result["buckets"]) == (bins if values else 0)


# --------------------------------------------------------------------------- robustness


def test_unknown_function_is_skipped_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orch.ddl.aggregate")
    act = ActionDDL("act", outputs={"v": OutputDDL("v")}, aggregate=(
        AggregateDDL("median", "v"), AggregateDDL("summary", "v")))
    summaries = summarize(act, replies({"v": 1}), AGGREGATES)
    assert [s.function for s in summaries] == ["summary"]
    [record] = [r for r in caplog.records if r.name == "orch.ddl.aggregate"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "no aggregate function 'median' installed; summary of v " \
                                  "skipped"


def test_bad_arguments_are_skipped_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orch.ddl.aggregate")
    act = ActionDDL("act", outputs={"v": OutputDDL("v")}, aggregate=(
        AggregateDDL("histogram", "v", ({"bins": 0},)),
        AggregateDDL("boolean_summary", "v", ("not a mapping",)),
        AggregateDDL("sum", "v")))
    summaries = summarize(act, replies({"v": 1}, {"v": 2}), AGGREGATES)
    assert [s.function for s in summaries] == ["sum"]
    messages = [r.getMessage() for r in caplog.records if r.name == "orch.ddl.aggregate"]
    assert len(messages) == 2
    assert messages[0].startswith("aggregate histogram(v) failed: ")
    assert messages[1].startswith("aggregate boolean_summary(v) failed: ")


def test_failed_replies_are_excluded() -> None:
    assert result_of("summary", data=["a"], failed=["b", "b"]) == {"counts": {"a": 1}}
    assert result_of("sum", data=[1, 2], failed=[100]) == {"value": 3.0, "count": 2,
                                                           "skipped": 0}
    assert result_of("boolean_summary", data=[True], failed=[False]) == {"counts": {"true": 1}}
    only_failed = one("average", failed=[1, 2])
    assert only_failed is not None
    assert only_failed.result == {"value": None, "count": 0, "skipped": 0}


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.OK])
def test_every_failure_status_is_excluded(status: Status) -> None:
    act = ActionDDL("act", outputs={"v": OutputDDL("v")},
                    aggregate=(AggregateDDL("sum", "v"),))
    reply = Reply("req", "bad", "a", "act", status, "no", {"v": 5})
    [summary] = summarize(act, [reply, *replies({"v": 1})], AGGREGATES)
    assert summary.result["value"] == 1


# --------------------------------------------------------------------------- the DDL sample


def test_every_builtin_over_the_sample_action() -> None:
    data = [
        {"status": "running", "enabled": True, "load": 0.5},
        {"status": "running", "enabled": True, "load": 1.5},
        {"status": "stopped", "enabled": False, "load": 4.0},
        {"status": "running", "enabled": True, "load": "n/a"},
    ]
    got = replies(*data, failed=[{"status": "broken", "load": 99}])
    summaries = summarize(REPORT, got, AGGREGATES)
    # One summary per output (Choria's rule): of average, sum and histogram over "load",
    # the last declared is shown; each is checked on its own below.
    assert [s.function for s in summaries] == ["summary", "boolean_summary", "histogram"]
    by_function = {s.function: s for s in summaries}
    for spec in REPORT.aggregate:
        if spec.output == "load":
            [alone] = summarize(dataclasses.replace(REPORT, aggregate=(spec,)), got,
                                AGGREGATES)
            by_function[spec.function] = alone
    assert by_function["summary"].result == {"counts": {"running": 3, "stopped": 1}}
    assert by_function["summary"].label == "Status"
    assert by_function["boolean_summary"].result == {"counts": {"enabled": 3, "disabled": 1}}
    assert by_function["boolean_summary"].label == "Enabled"
    assert by_function["average"].result == {"value": 2.0, "count": 3, "skipped": 1}
    assert by_function["sum"].result == {"value": 6.0, "count": 3, "skipped": 1}
    assert [b["count"] for b in by_function["histogram"].result["buckets"]] == [1, 1, 0, 1]
    assert by_function["sum"].to_json() == {"function": "sum", "output": "load",
                                            "result": {"value": 6.0, "count": 3,
                                                       "skipped": 1}}


def test_label_falls_back_to_the_output_name() -> None:
    summary = one("summary", output="os_family", data=["x"])
    assert summary is not None and summary.label == "os_family"
    summary = one("summary", output="os_family", label="OS Family", data=["x"])
    assert summary is not None and summary.label == "OS Family"
    act = ActionDDL("act", aggregate=(AggregateDDL("summary", "undeclared"),))
    [summary] = summarize(act, replies({"undeclared": 1}), AGGREGATES)
    assert summary.label == "undeclared" and summary.result == {"counts": {"1": 1}}


def test_choria_util_aggregates() -> None:
    info = load_ddl(SAMPLES / "choria_util.json").actions["info"]
    data = [
        {"security": "choria", "connector": "nats", "connector_tls": True,
         "secure_protocol": True, "choria_version": "0.29.0", "using_srv": False},
        {"security": "choria", "connector": "nats", "connector_tls": False,
         "secure_protocol": True, "choria_version": "0.28.0", "using_srv": False},
    ]
    results = {(s.function, s.output): s.result for s in summarize(info, replies(*data),
                                                                   AGGREGATES)}
    assert results[("summary", "security")] == {"counts": {"choria": 2}}
    assert results[("boolean_summary", "connector_tls")] == {
        "counts": {"encrypted": 1, "plain": 1}}
    assert results[("boolean_summary", "using_srv")] == {"counts": {"no": 2}}
    assert results[("summary", "choria_version")] == {"counts": {"0.29.0": 1, "0.28.0": 1}}


# --------------------------------------------------------------------------- plugins


class MaximumAggregator:
    """A plugin's aggregate: the largest number, with an optional unit label."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.unit = (options or {}).get("unit", "")
        self.best: float | None = None

    def add(self, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.best = value if self.best is None else max(self.best, value)

    def result(self) -> dict[str, Any]:
        return {"value": self.best}

    def lines(self) -> list[str]:
        return [f"maximum {self.best}{self.unit}"]


class MaximumPlugin:
    @hookimpl
    def orch_aggregate_functions(self) -> Mapping[str, Callable[..., Aggregator]]:
        return {"maximum": MaximumAggregator}


class ShadowSumPlugin:
    @hookimpl
    def orch_aggregate_functions(self) -> Mapping[str, Callable[..., Aggregator]]:
        return {"sum": MaximumAggregator}


def test_aggregate_function_from_a_plugin() -> None:
    registry = PluginRegistry.from_entry_points()
    assert registry.register(MaximumPlugin(), "maximum")
    functions = registry.aggregate_functions()
    assert set(AGGREGATES) | {"maximum"} <= set(functions)
    act = ActionDDL("act", outputs={"load": OutputDDL("load", display_as="Load"),
                                    "peak": OutputDDL("peak", display_as="Peak")},
                    aggregate=(AggregateDDL("maximum", "peak", ({"unit": "%"},)),
                               AggregateDDL("average", "load")))
    summaries = summarize(act, replies({"load": 3, "peak": 3}, {"load": 9.5, "peak": 9.5},
                                       {"load": "x", "peak": "x"}), functions)
    assert [(s.function, s.label, dict(s.result), s.lines) for s in summaries] == [
        ("maximum", "Peak", {"value": 9.5}, ("maximum 9.5%",)),
        ("average", "Load", {"value": 6.25, "count": 2, "skipped": 1},
         ("average 6.25 over 2 node(s)",)),
    ]


def test_plugin_may_not_replace_a_builtin_function() -> None:
    registry = PluginRegistry.from_entry_points()
    assert registry.register(ShadowSumPlugin(), "shadow")
    with pytest.raises(PluginError, match="two plugins provide the aggregate function 'sum'"):
        registry.aggregate_functions()
