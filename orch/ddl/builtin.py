"""Built-in DDL validators and aggregate functions, registered like any plugin's."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from orch.core.hookspecs import hookimpl
from orch.core.protocol import value_text
from orch.ddl.aggregate import AggregateFactory, Aggregator

SHELL_UNSAFE = frozenset("`$;|&><\n\r\"'\\")


def shellsafe(value: Any) -> bool:
    """No character a shell would interpret: quotes, ``$``, backticks, ``;|&<>``, newlines."""
    return not isinstance(value, str) or not SHELL_UNSAFE.intersection(value)


def _ip(version: int | None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return True  # the type check reports non-strings
        if "%" in value:
            return False  # IPv6 zone ids accept any text, shell metacharacters included
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return version is None or address.version == version

    return check


VALIDATORS: Mapping[str, Callable[[Any], bool]] = {
    "shellsafe": shellsafe,
    "ipv4address": _ip(4),
    "ipv6address": _ip(6),
    "ipaddress": _ip(None),
}


class SummaryAggregator:
    """How many nodes returned each distinct value."""

    def __init__(self, *args: Any) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, value: Any) -> None:
        self.counts[value_text(value)] += 1

    def result(self) -> dict[str, Any]:
        return {"counts": dict(self.counts.most_common())}

    def lines(self) -> list[str]:
        width = max((len(k) for k in self.counts), default=0)
        return [f"{key:>{width}} = {count}" for key, count in self.counts.most_common()]


class BooleanSummaryAggregator(SummaryAggregator):
    """Counts of true and false, with optional labels: ``{"true": "enabled", ...}``."""

    def __init__(self, labels: Mapping[str, str] | None = None, *args: Any) -> None:
        super().__init__()
        self.labels = {"true": "true", "false": "false", **(labels or {})}

    def add(self, value: Any) -> None:
        if value is None:
            return  # a node that did not return the output is neither true nor false
        self.counts[self.labels["true" if value else "false"]] += 1


class AverageAggregator:
    """The mean of numeric values (others are ignored and counted)."""

    def __init__(self, *args: Any) -> None:
        self.values: list[float] = []
        self.skipped = 0

    def add(self, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.values.append(float(value))
        else:
            self.skipped += 1

    def result(self) -> dict[str, Any]:
        mean = sum(self.values) / len(self.values) if self.values else None
        return {"value": mean, "count": len(self.values), "skipped": self.skipped}

    def lines(self) -> list[str]:
        mean = self.result()["value"]
        return [f"average {mean:g} over {len(self.values)} node(s)" if mean is not None
                else "no numeric values"]


class SumAggregator(AverageAggregator):
    """The total of numeric values."""

    def result(self) -> dict[str, Any]:
        return {"value": sum(self.values), "count": len(self.values), "skipped": self.skipped}

    def lines(self) -> list[str]:
        return [f"sum {sum(self.values):g} over {len(self.values)} node(s)"]


class HistogramAggregator(AverageAggregator):
    """Numeric values in ``bins`` equal-width buckets, drawn as bars."""

    def __init__(self, options: Mapping[str, Any] | None = None, *args: Any) -> None:
        super().__init__()
        self.bins = int((options or {}).get("bins", 8))

    def buckets(self) -> list[tuple[float, float, int]]:
        if not self.values:
            return []
        low, high = min(self.values), max(self.values)
        width = (high - low) / self.bins or 1.0
        counts = [0] * self.bins
        for value in self.values:
            counts[min(int((value - low) / width), self.bins - 1)] += 1
        return [(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]

    def result(self) -> dict[str, Any]:
        return {"buckets": [{"from": a, "to": b, "count": n} for a, b, n in self.buckets()],
                "skipped": self.skipped}

    def lines(self) -> list[str]:
        buckets = self.buckets()
        peak = max((n for _, _, n in buckets), default=0) or 1
        return [f"{a:>10.4g} - {b:<10.4g} {'#' * round(30 * n / peak):<30} {n}"
                for a, b, n in buckets]


AGGREGATES: Mapping[str, AggregateFactory] = {
    "summary": SummaryAggregator,
    "boolean_summary": BooleanSummaryAggregator,
    "average": AverageAggregator,
    "sum": SumAggregator,
    "histogram": HistogramAggregator,
}


@hookimpl
def orch_validators() -> Mapping[str, Callable[[Any], bool]]:
    return VALIDATORS


@hookimpl
def orch_aggregate_functions() -> Mapping[str, Callable[..., Aggregator]]:
    return AGGREGATES
