"""Fleet-wide views: ``orch puppet count`` and ``orch puppet summary``.

Pure functions over reply data (``{node: status outputs}``, ``{node: last_run_summary
outputs}``), so they are tested without a fleet. The histograms are the compact text
sparklines ``mco puppet summary`` prints: one character per bucket, min and max beside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orch.plugin import duration_text

BARS = "▁▂▃▄▅▆▇█"
BUCKETS = 20

#: ``(output of last_run_summary, label)`` — the distributions the summary draws.
DISTRIBUTIONS: tuple[tuple[str, str], ...] = (
    ("total_resources", "Total resources"),
    ("out_of_sync_resources", "Out of sync resources"),
    ("failed_resources", "Failed resources"),
    ("changed_resources", "Changed resources"),
    ("corrected_resources", "Corrected resources"),
    ("config_retrieval_time", "Config retrieval time (s)"),
    ("total_time", "Total run-time (s)"),
    ("since_lastrun", "Time since last run (s)"),
)


def histogram(values: Sequence[float], buckets: int = BUCKETS) -> list[int]:
    """Counts of ``values`` in ``buckets`` equal-width buckets between min and max."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / buckets
    counts = [0] * buckets
    for value in values:
        index = int((value - low) / width) if width else 0
        counts[min(index, buckets - 1)] += 1
    return counts


def sparkline(counts: Sequence[int]) -> str:
    """One bar per bucket, scaled to the fullest bucket; empty buckets show the lowest bar."""
    peak = max(counts, default=0)
    if not peak:
        return ""
    top = len(BARS) - 1
    return "".join(BARS[round(top * count / peak)] for count in counts)


def human(number: float) -> str:
    """``1.8k``-style short numbers for the min/max columns."""
    if abs(number) >= 1_000_000:
        return f"{number / 1_000_000:.1f}M"
    if abs(number) >= 1000:
        return f"{number / 1000:.1f}k"
    if number == int(number):
        return str(int(number))
    return f"{number:.2f}"


@dataclass(frozen=True)
class Distribution:
    label: str
    values: tuple[float, ...]

    @property
    def counts(self) -> list[int]:
        return histogram(self.values)

    def to_json(self) -> dict[str, Any]:
        values = self.values
        return {
            "label": self.label, "count": len(values),
            "min": min(values) if values else None, "max": max(values) if values else None,
            "mean": round(sum(values) / len(values), 3) if values else None,
            "histogram": self.counts,
        }

    def line(self, width: int) -> str:
        if not self.values:
            return f"{self.label:>{width}}: no data"
        # Seconds read as durations (1h30m), never as shortened numbers ("5.4ks").
        text = duration_text if self.label.endswith("(s)") else human
        return (f"{self.label:>{width}}: {sparkline(self.counts):<{BUCKETS}}  "
                f"min: {text(min(self.values)):<7} max: {text(max(self.values))}")


#: Distributions every completed run counts in; the others (resource counts, catalog
#: retrieval) only count runs that got a catalog: a run without one has all-zero counts.
RUN_KEYS = frozenset({"total_time", "since_lastrun"})


def _had_catalog(data: Mapping[str, Any]) -> bool:
    return not (data.get("run_status") == "failed" and not data.get("total_resources"))


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class Counts:
    """``orch puppet count``: how many nodes are in each state."""

    total: int = 0
    enabled: int = 0
    disabled: int = 0
    applying: int = 0
    stopped: int = 0
    idling: int = 0
    daemon_present: int = 0
    #: Nodes with no puppet command: not Puppet nodes, counted apart from every state.
    not_installed: int = 0
    #: Nodes whose last run failed (no catalog, failed resources).
    last_run_failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, statuses: Mapping[str, Mapping[str, Any]]) -> Counts:
        counts = cls()
        for data in statuses.values():
            status = str(data.get("status", "unknown"))
            counts.by_status[status] = counts.by_status.get(status, 0) + 1
            if data.get("installed") is False:
                counts.not_installed += 1
                continue
            counts.total += 1
            counts.last_run_failed += data.get("last_run_status") == "failed"
            counts.enabled += bool(data.get("enabled"))
            counts.disabled += not data.get("enabled")
            counts.applying += bool(data.get("applying"))
            counts.idling += bool(data.get("idling"))
            counts.daemon_present += bool(data.get("daemon_present"))
            counts.stopped += not data.get("daemon_present") and not data.get("applying")
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "enabled": self.enabled, "disabled": self.disabled,
                "applying": self.applying, "stopped": self.stopped, "idling": self.idling,
                "daemon_present": self.daemon_present,
                "daemon_absent": self.total - self.daemon_present,
                "last_run_failed": self.last_run_failed, "not_installed": self.not_installed,
                "by_status": dict(sorted(self.by_status.items()))}

    def lines(self) -> list[str]:
        rows = [
            ("Nodes currently enabled", self.enabled),
            ("Nodes currently disabled", self.disabled),
            None,
            ("Nodes currently doing puppet runs", self.applying),
            ("Nodes currently stopped", self.stopped),
            None,
            ("Nodes with daemons started", self.daemon_present),
            ("Nodes without daemons started", self.total - self.daemon_present),
            ("Daemons started but idling", self.idling),
            None,
            ("Nodes whose last run failed", self.last_run_failed),
            ("Nodes without Puppet installed", self.not_installed),
        ]
        width = max(len(r[0]) for r in rows if r is not None)
        out = [f"Total Puppet nodes: {self.total}", ""]
        out += ["" if r is None else f"{r[0]:>{width}}: {r[1]}" for r in rows]
        return out


@dataclass
class FleetSummary:
    """``orch puppet summary``: the fleet's Puppet health on one screen."""

    counts: Counts
    stale_after: float
    stale: list[str]
    never_ran: list[str]
    failed: dict[str, int]
    distributions: list[Distribution]
    nodes: int
    #: ``{node: why}`` for nodes whose last run failed (no catalog, failed resources).
    failed_runs: dict[str, str] = field(default_factory=dict)
    not_installed: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, statuses: Mapping[str, Mapping[str, Any]],
           summaries: Mapping[str, Mapping[str, Any]], stale_after: float) -> FleetSummary:
        """Build from status and last_run_summary outputs of the same nodes.

        Stale: the last run completed more than ``stale_after`` seconds ago (by the node's
        own clock), or never.
        """
        stale, never, missing = [], [], []
        for name, data in sorted(statuses.items()):
            if data.get("installed") is False:
                missing.append(name)
                continue
            since = _number(data, "since_lastrun")
            if not data.get("lastrun") or since is None:
                never.append(name)
                stale.append(name)
            elif since > stale_after:
                stale.append(name)
        failed = {name: int(_number(data, "failed_resources") or 0)
                  for name, data in sorted(summaries.items())
                  if (_number(data, "failed_resources") or 0) > 0}
        distributions = []
        for key, label in DISTRIBUTIONS:
            values = tuple(v for data in summaries.values()
                           if data.get("lastrun") and (key in RUN_KEYS or _had_catalog(data))
                           and (v := _number(data, key)) is not None)
            distributions.append(Distribution(label, values))
        failed_runs = {name: str(data.get("last_run_failure") or "failed")
                       for name, data in statuses.items()
                       if data.get("last_run_status") == "failed"}
        for name, data in summaries.items():  # the report's reason is the better one
            if data.get("run_status") == "failed":
                failed_runs[name] = str(data.get("run_failure") or "failed")
        return cls(Counts.of(statuses), stale_after, stale, never, failed, distributions,
                   len(set(statuses) | set(summaries)), dict(sorted(failed_runs.items())),
                   missing)

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "counts": self.counts.to_json(),
            "stale_after_s": self.stale_after,
            "stale": self.stale,
            "never_ran": self.never_ran,
            "failed_resources": self.failed,
            "failed_runs": self.failed_runs,
            "not_installed": self.not_installed,
            "distributions": {key: d.to_json() for (key, _), d in
                              zip(DISTRIBUTIONS, self.distributions, strict=True)},
        }

    def lines(self) -> list[str]:
        c = self.counts
        no_catalog = sum("no catalog" in why for why in self.failed_runs.values())
        out = [
            f"Puppet summary for {self.nodes} node(s):",
            "",
            f"   enabled: {c.enabled}   disabled: {c.disabled}   applying: {c.applying}   "
            f"idle: {c.total - c.applying}   daemons: {c.daemon_present}",
            f"   stale (no run for {duration_text(self.stale_after)} or never): "
            f"{len(self.stale)}"
            + (f" ({len(self.never_ran)} never ran)" if self.never_ran else ""),
            f"   failed last runs: {len(self.failed_runs)}"
            + (f" ({no_catalog} without a catalog)" if no_catalog else ""),
            f"   failed resources in the last run: {sum(self.failed.values())} on "
            f"{len(self.failed)} node(s)",
        ]
        if self.not_installed:
            out.append(f"   puppet not installed: {len(self.not_installed)}")
        out.append("")
        width = max(len(d.label) for d in self.distributions)
        out += ["   " + d.line(width) for d in self.distributions]
        return out
