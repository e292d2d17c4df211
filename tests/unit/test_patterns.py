"""Bounded regular expressions (:mod:`orch.core.patterns`) and the filter budget.

Issue 18: one ``orch find -F 'os_description=~/^(.+)+X$/'`` froze every daemon, because
Python's ``re`` backtracks. These tests feed the patterns that blow up a backtracking
engine to every place orch accepts a pattern, and check the budget that bounds the rest.
None asserts a timing: a backtracking engine would make them hang, not fail an assertion.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.filter import (
    FilterBudget,
    FilterBudgetError,
    FilterEngine,
    FilterSyntaxError,
    NodeView,
)
from orch.core.filterargs import build_filter
from orch.core.patterns import (
    MAX_PATTERN_LENGTH,
    PatternError,
    compile_pattern,
    search,
)
from orch.core.plugins import default_registry

#: Patterns that take exponential (or huge polynomial) time in a backtracking engine on
#: a subject such as ``"a" * 40 + "!"``, and are harmless under RE2.
CATASTROPHIC = [
    r"^(.+)+X$",
    r"^(a+)+$",
    r"^(a|aa)+$",
    r"^(a|a?)+$",
    r"(x+x+)+y",
    r"^(\w+\s?)*$",
    r"^((a*)*)*b$",
    r"(.*a){20}",
    r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@)",
]
#: Patterns no bounded engine should even compile: huge repetition counts.
HUGE_REPETITIONS = [r"a{100000}{100000}", r"(a{1000}){1000}", r"a{1001}", r"((a{500}){500}){500}"]
#: Syntax only a backtracking engine has: refused, with a reason.
UNSUPPORTED = {r"(?=a)b": "lookaround", r"(?<!a)b": "lookaround", r"(a)\1": "backreference"}
HOSTILE_SUBJECTS = ["a" * 40 + "!", "a" * 5000 + "!", "x" * 3000, "aaaa bbbb " * 500]


def engine(budget: FilterBudget | None = None, clock: Any = None) -> FilterEngine:
    registry = default_registry()
    extra = {} if clock is None else {"clock": clock}
    return FilterEngine(registry.filter_kinds(), registry.filter_functions(), budget, **extra)


# --------------------------------------------------------------------- the engine


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_match_in_linear_time(pattern: str) -> None:
    for subject in HOSTILE_SUBJECTS:
        assert isinstance(search(pattern, subject), bool)


@pytest.mark.parametrize("pattern", HUGE_REPETITIONS)
def test_huge_repetitions_are_refused_at_compile_time(pattern: str) -> None:
    with pytest.raises(PatternError, match="1000"):
        compile_pattern(pattern)


@pytest.mark.parametrize(("pattern", "reason"), UNSUPPORTED.items())
def test_backtracking_only_syntax_is_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=f"{reason}s are not supported|{reason} is not"):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", ["a" * (MAX_PATTERN_LENGTH + 1), "(((((a)))))" * 400])
def test_oversized_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", ["[unclosed", "(", "a**", "\\", 42])
def test_invalid_patterns_raise_only_pattern_error(pattern: Any) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)


@pytest.mark.parametrize(("pattern", "subject", "found"), [
    (r"^web\d+$", "web12", True),
    (r"^web\d+$", "web12\n", False),  # $ is the end of the text, as JSON Schema means it
    (r"(?m)^web$", "db\nweb\nx", True),
    (r"(?i)^DEBIAN", "debian", True),
    (r"^Debian\Z", "Debian", True),  # Python's \Z keeps its meaning (RE2 spells it \z)
    (r"^Debian\Z", "Debian\n", False),
    (r"\\Z", "\\Z", True),  # an escaped backslash followed by Z is left alone
    (r"^(deb|ubu)", "ubuntu", True),
    (r"(?P<major>\d+)\.\d+", "12.4", True),
    (r"^[[:alpha:]]+$", "abc", True),
    (r"\bweb\b", "a web node", True),
    (r"café", "un café", True),
])
def test_the_syntax_filters_use_is_kept(pattern: str, subject: str, found: bool) -> None:
    assert search(pattern, subject) is found


# --------------------------------------------------------------------- every place


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_in_every_filter_kind(pattern: str) -> None:
    hostile = "a" * 60 + "!"
    node = NodeView(hostile, {"os_description": hostile, "list": [hostile] * 3},
                    frozenset({hostile}), frozenset({hostile}))
    filters = engine()
    slashed = f"/{pattern}/"
    for wire in (
        {"fact": [{"fact": "os_description", "operator": "=~", "value": pattern}]},
        {"fact": [{"fact": "list", "operator": "=~", "value": pattern}]},
        {"class": [slashed]}, {"identity": [slashed]}, {"agent": [slashed]},
        {"compound": [f"os_description=~{slashed} or {slashed} or has_class('{slashed}')"
                      f" or identity()=~{slashed} or has_agent('{slashed}')"]},
    ):
        filters.check(wire)
        assert isinstance(filters.matches(wire, node), bool)


@pytest.mark.parametrize("pattern", HUGE_REPETITIONS + list(UNSUPPORTED))
def test_refused_patterns_are_syntax_errors_in_every_filter_kind(pattern: str) -> None:
    node = NodeView("web1", {"os": "Debian"})
    filters = engine()
    for kind, term in (("fact", {"fact": "os", "operator": "=~", "value": pattern}),
                       ("class", f"/{pattern}/"), ("identity", f"/{pattern}/"),
                       ("compound", f"os=~/{pattern}/")):
        with pytest.raises(FilterSyntaxError, match="invalid regex"):
            filters.matches({kind: [term]}, node)


@pytest.mark.parametrize(("option", "text", "named"), [
    ("fact", "os=~/a{100000}{100000}/", "a{100000}{100000}"),
    ("fact", "os=/(?=x)y/", "(?=x)y"),
    ("classes", "/(a)\\1/", "class filter '/(a)"),
    ("identities", "/a{2000}/", "identity filter '/a{2000}/'"),
    ("agents", "/(?!x)/", "agent filter '/(?!x)/'"),
    ("compound", "os=~/(?<=a)b/", "(?<=a)b"),
])
def test_client_refuses_unsupported_patterns_naming_the_term(
    option: str, text: str, named: str
) -> None:
    with pytest.raises(FilterSyntaxError, match="invalid regex") as info:
        build_filter(engine(), **{option: [text]})
    assert named in str(info.value)


# --------------------------------------------------------------------- the budget


def test_budget_refuses_too_many_terms_naming_the_term() -> None:
    filters = engine(FilterBudget(max_terms=3))
    build_filter(filters, fact=["a=1", "b=2"], classes=["web"])
    with pytest.raises(FilterBudgetError,
                       match=r"fact term .*'d'.* 4 tests, more than 3 \(filter_max_terms\)"):
        build_filter(filters, fact=["a=1", "b=2", "c=3", "d=4"])
    with pytest.raises(FilterBudgetError, match="filter_max_terms"):
        build_filter(filters, compound=["a=1 or b=2 or web or has_class('x')"])


def test_budget_refuses_a_large_filter() -> None:
    filters = engine(FilterBudget(max_bytes=100))
    with pytest.raises(FilterBudgetError, match="larger than 100 characters"):
        filters.check({"fact": [{"fact": "x", "operator": "==", "value": "v" * 200}]})
    with pytest.raises(FilterBudgetError, match="filter_max_bytes"):
        filters.check({"class": ["web"] * 60})


def test_budget_refuses_deep_nesting() -> None:
    filters = engine(FilterBudget(max_depth=4))
    assert filters.check({"compound": ["((a or b) and c)"]}) is None
    with pytest.raises(FilterBudgetError, match="nests 5 levels, more than 4"):
        filters.check({"compound": ["(a and (b or (c and (d or not e))))"]})
    nested: Any = "x"
    for _ in range(10):
        nested = [nested]
    with pytest.raises(FilterBudgetError, match="filter_max_depth"):
        filters.check({"fact": [nested]})


def test_budget_measures_hostile_shapes_without_parsing_them() -> None:
    filters = engine()
    with pytest.raises(FilterBudgetError, match="filter_max_bytes"):
        filters.check({"compound": ["(" * 1_000_000]})
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(FilterBudgetError):
        filters.check({"fact": [deep]})


def test_malformed_terms_stay_syntax_errors_not_budget_errors() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        engine().check({"compound": ["(role=web"]})
    assert not isinstance(info.value, FilterBudgetError)


class FakeClock:
    """A clock that moves only when the ``tick()`` filter function is called: one second."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, node: NodeView) -> bool:
        self.now += 1.0
        return True


def ticking_engine(max_seconds: float) -> tuple[FilterEngine, FakeClock]:
    clock = FakeClock()
    registry = default_registry()
    functions = {**registry.filter_functions(), "tick": clock.tick}
    return FilterEngine(registry.filter_kinds(), functions, FilterBudget(max_seconds=max_seconds),
                        clock), clock


def test_evaluation_past_its_time_is_abandoned() -> None:
    """Each ``tick()`` takes a (fake) second: with a 1.5 s budget the third test is past
    the deadline, so the evaluation stops there instead of finishing."""
    node = NodeView("web1", {"a": 1})
    filters, clock = ticking_engine(1.5)
    with pytest.raises(FilterBudgetError, match=r"longer than 1\.5s"):
        filters.matches({"compound": ["tick() and tick() and tick() and tick()"]}, node)
    assert clock.now == 2.0  # stopped before the third operand
    filters, clock = ticking_engine(1.5)
    with pytest.raises(FilterBudgetError, match="filter_max_seconds"):
        filters.matches({"compound": ["tick()", "tick()", "tick()", "tick()"]}, node)
    assert clock.now == 2.0  # stopped before the third term
    filters, clock = ticking_engine(2.5)
    assert filters.matches({"compound": ["tick() and tick()"]}, node)


def test_time_budget_only_applies_inside_an_evaluation() -> None:
    filters, clock = ticking_engine(0.5)
    clock.now = 100.0
    filters.check_time()  # no evaluation running: nothing to enforce
    assert filters.matches({"compound": ["tick()"]}, NodeView("n"))


# --------------------------------------------------------------------- property

_REGEX_ATOMS = st.sampled_from(["a", "b", ".", "\\w", "\\s", "[ab]", "[^a]", "x", "\\d"])
_QUANTIFIERS = st.sampled_from(["", "*", "+", "?", "{2,5}", "*?", "{0,50}"])


@st.composite
def _regexes(draw: st.DrawFn, depth: int = 3) -> str:
    """Nested groups of quantified atoms and alternations: fertile ground for blow-ups."""
    if depth == 0 or draw(st.booleans()):
        return draw(_REGEX_ATOMS) + draw(_QUANTIFIERS)
    parts = draw(st.lists(_regexes(depth - 1), min_size=1, max_size=3))
    joiner = draw(st.sampled_from(["", "|"]))
    return "(" + joiner.join(parts) + ")" + draw(_QUANTIFIERS)


@settings(max_examples=200, deadline=None)
@given(st.lists(_regexes(), min_size=1, max_size=3).map("".join).map(lambda p: "^" + p + "$"),
       st.text(alphabet="ab x!1", max_size=300))
def test_generated_patterns_and_subjects_stay_within_the_default_budget(
    pattern: str, subject: str
) -> None:
    """Whatever the pattern and subject, a filter the client accepts evaluates without
    exceeding the default budget (a quarter of a second) on a node — in every kind."""
    filters = engine()
    try:
        wire = build_filter(filters, fact=[f"desc=~/{pattern}/"], classes=[f"/{pattern}/"],
                            compound=[f"desc=~/{pattern}/ or /{pattern}/"])
    except FilterSyntaxError:
        return  # refused on the client: never sent
    node = NodeView(subject, {"desc": subject}, frozenset({subject}))
    filters.check(wire)
    assert isinstance(filters.matches(wire, node), bool)


@pytest.mark.parametrize(("pattern", "subject"), [("x", "\ud800x"), ("\ud800", "a\ud800")])
def test_lone_surrogates_from_json_are_searched_not_crashed_on(pattern: str, subject: str) -> None:
    assert search(pattern, subject) is True
    assert compile_pattern(pattern).fullmatch(subject + "!") is None
    assert isinstance(search("^.+$", "\udfff\ud800"), bool)


def test_long_patterns_are_not_kept_in_the_cache() -> None:
    """A sender choosing many distinct long patterns must not pin their programs in
    every node's memory: only short ones, which real filters repeat, are cached."""
    from orch.core import patterns

    before = patterns._compile_cached.cache_info().currsize
    for index in range(20):
        assert search(f"(x{index}|" + "[a-z]{10}" * 40 + ")", "nothing") is False
    assert patterns._compile_cached.cache_info().currsize == before
    search("^short-and-repeated$", "x")
    assert patterns._compile_cached.cache_info().currsize == before + 1
