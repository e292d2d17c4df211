"""Filter evaluation cost: the bounded engine (RE2) against Python's ``re`` and ``regex``.

Run: ``python -m pytest bench/test_bench_patterns.py --benchmark-only -p no:cacheprovider``
(``pip install regex`` for the ``regex``-with-timeout rows; they are skipped without it).

Issue 18 asked to choose between a linear-time engine and a backtracking one with a
per-match timeout, by measurement. Three groups:

* ``typical`` — one search with the patterns operators write (anchors, classes,
  alternation, ``(?i)``) over fact-sized values, per engine: what every request pays;
* ``filter`` — a whole realistic filter (fact regex, class regex, identity regex and a
  compound expression) evaluated by :class:`~orch.core.filter.FilterEngine` against one
  node, with the bounded engine and with ``re`` patched in (orch before issue 18);
* ``hostile`` — one search of a catastrophic pattern: RE2 at 40 and 4,000 characters,
  ``regex`` with a 0.1 s timeout (what a timeout-based design pays per term, per node), and
  ``re`` at only 22 characters (it doubles with every character: at 40 it never ends).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest

from orch.core import patterns
from orch.core.filter import FilterBudget, FilterEngine, NodeView
from orch.core.plugins import default_registry
from orch.filters import terms

#: (pattern, subject) pairs of the kind filters and DDLs hold.
TYPICAL = [
    (r"^web\d+\.fra1\.example\.net$", "web042.fra1.example.net"),
    (r"(?i)^debian", "Debian GNU/Linux 12 (bookworm)"),
    (r"^(deb|ubu)", "ubuntu"),
    (r"^profile::(web|db)server$", "profile::webserver"),
    (r"^[a-z][a-z0-9_-]*$", "nginx_config-01"),
    (r"\b5\.10\.\d+", "Linux 5.10.0-26-amd64 #1 SMP Debian 5.10.197-1"),
]
ROUNDS = 200

NODE = NodeView(
    "web042.fra1.example.net",
    {"os": {"family": "Debian", "description": "Debian GNU/Linux 12 (bookworm)"},
     "role": "web", "environment": "production", "cpus": 8,
     "kernelrelease": "5.10.0-26-amd64", "ipaddresses": [f"10.0.{i}.7" for i in range(8)]},
    frozenset({"profile::webserver", "nginx", "role::web", "base"}),
    frozenset({"rpcutil", "puppet", "service"}),
)
FILTER = {
    "fact": [{"fact": "os.description", "operator": "=~", "value": "(?i)^debian"},
             {"fact": "ipaddresses", "operator": "=~", "value": r"^10\.0\.7\."},
             {"fact": "environment", "operator": "==", "value": "production"}],
    "class": ["/^profile::(web|db)server$/"],
    "identity": ["/^web\\d+\\.fra1\\./"],
    "compound": ["(role=web or role=db) and kernelrelease=~/^5\\.10/ and "
                 "not has_class('/^role::canary/')"],
}


def _engines() -> dict[str, Callable[[str], Any]]:
    engines: dict[str, Callable[[str], Any]] = {
        "re": functools.lru_cache(maxsize=None)(re.compile),
        "re2": patterns.compile_pattern,
    }
    try:
        import regex
    except ImportError:
        return engines
    compiled = functools.lru_cache(maxsize=None)(regex.compile)
    engines["regex-timeout"] = lambda pattern: _Timed(compiled(pattern))
    return engines


class _Timed:
    """A ``regex`` pattern searched with the per-match timeout a timeout design would use."""

    def __init__(self, pattern: Any, timeout: float = 0.1) -> None:
        self.pattern, self.timeout = pattern, timeout

    def search(self, text: str) -> Any:
        try:
            return self.pattern.search(text, timeout=self.timeout)
        except TimeoutError:
            return None


ENGINES = _engines()


@pytest.mark.parametrize("engine", ["re", "re2", "regex-timeout"])
def test_typical_searches(benchmark: Any, engine: str) -> None:
    if engine not in ENGINES:
        pytest.skip("pip install regex for this row")
    benchmark.group = "typical"
    compiled = [(ENGINES[engine](pattern), subject) for pattern, subject in TYPICAL]

    def run() -> int:
        found = 0
        for _ in range(ROUNDS):
            for pattern, subject in compiled:
                found += pattern.search(subject) is not None
        return found

    assert benchmark(run) == ROUNDS * len(TYPICAL)
    searches = ROUNDS * len(TYPICAL)
    per_search = benchmark.stats.stats.mean / searches * 1e6
    benchmark.extra_info["us_per_search"] = round(per_search, 3)
    print(f"\n{engine}: {per_search:.2f} µs per search")


def _re_compile_regex(pattern: str) -> Any:
    return _RE_CACHE(pattern)


_RE_CACHE = functools.lru_cache(maxsize=1024)(re.compile)


@pytest.mark.parametrize("engine", ["re", "re2"])
def test_filter_evaluation(benchmark: Any, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole filter against one node, as ``Node`` evaluates it (budget check included)."""
    benchmark.group = "filter"
    if engine == "re":
        monkeypatch.setattr(terms, "compile_regex", _re_compile_regex)
    registry = default_registry()
    filters = FilterEngine(registry.filter_kinds(), registry.filter_functions(), FilterBudget())

    def run() -> bool:
        selected = False
        for _ in range(ROUNDS):
            filters.check(FILTER)
            selected = filters.matches(FILTER, NODE)
        return selected

    assert benchmark(run) is True
    per_filter = benchmark.stats.stats.mean / ROUNDS * 1e6
    benchmark.extra_info["us_per_filter"] = round(per_filter, 2)
    print(f"\n{engine}: {per_filter:.1f} µs per filter evaluation")


@pytest.mark.parametrize(("engine", "pattern", "subject"), [
    ("re2", r"^(.+)+X$", "a" * 40),
    ("re2", r"^(.+)+X$", "a" * 4000),
    ("re2", r"^(a|aa)+$", "a" * 40 + "!"),
    ("regex-timeout", r"^(a|aa)+$", "a" * 40 + "!"),
    ("re", r"^(.+)+X$", "a" * 22),
])
def test_hostile_search(benchmark: Any, engine: str, pattern: str, subject: str) -> None:
    if engine not in ENGINES:
        pytest.skip("pip install regex for this row")
    benchmark.group = "hostile"
    compiled = ENGINES[engine](pattern)
    benchmark.pedantic(compiled.search, args=(subject,), rounds=5, iterations=1,
                       warmup_rounds=1)
    benchmark.extra_info["subject_length"] = len(subject)
    print(f"\n{engine} {pattern} on {len(subject)} chars: "
          f"{benchmark.stats.stats.mean * 1e3:.3f} ms")
