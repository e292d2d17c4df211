"""Tests of the built-in filter kinds, single-term matching and the compound language."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core import filterargs
from orch.core.filter import FilterEngine, FilterSyntaxError, NodeView
from orch.filters import builtin, compound
from orch.filters.compound import And, Call, ClassTest, FactTest, Not, Or
from orch.filters.terms import (
    FactTerm,
    compare,
    match_fact,
    match_name,
    parse_fact_term,
    parse_name_pattern,
)

NODE = NodeView(
    identity="web1.example.com",
    facts={
        "os": {"family": "Debian", "release": {"major": "12"}},
        "kernel": "Linux",
        "cpus": 8,
        "memory_gb": 15.5,
        "uptime": "86400",
        "version": "10",
        "name": "abc",
        "virtual": True,
        "ipaddresses": ["10.0.0.5", "192.168.1.5"],
        "ports": [22, 80, 443],
        "empty": "",
        "nothing": None,
        "role": "web server",
        "path": "/var/www",
        "dotted.flat": "flat",
    },
    classes=frozenset({"webserver", "base", "nginx::config"}),
    agents=frozenset({"rpcutil", "puppet"}),
)


@pytest.fixture(scope="module")
def engine() -> FilterEngine:
    return FilterEngine(
        {k.name: k for k in builtin.orch_filter_kinds()}, builtin.orch_filter_functions()
    )


def fact_matches(text: str, node: NodeView = NODE) -> bool:
    return match_fact(parse_fact_term(text), node)


def s(expression: str, engine: FilterEngine, node: NodeView = NODE) -> bool:
    return compound.matches(expression, node, engine)


# --------------------------------------------------------------------------- parse_fact_term


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("kernel=Linux", {"fact": "kernel", "operator": "==", "value": "Linux"}),
        ("kernel==Linux", {"fact": "kernel", "operator": "==", "value": "Linux"}),
        ("kernel!=Linux", {"fact": "kernel", "operator": "!=", "value": "Linux"}),
        ("cpus<4", {"fact": "cpus", "operator": "<", "value": "4"}),
        ("cpus>4", {"fact": "cpus", "operator": ">", "value": "4"}),
        ("cpus<=4", {"fact": "cpus", "operator": "<=", "value": "4"}),
        ("cpus>=4", {"fact": "cpus", "operator": ">=", "value": "4"}),
        ("cpus=>4", {"fact": "cpus", "operator": ">=", "value": "4"}),
        ("cpus=<4", {"fact": "cpus", "operator": "<=", "value": "4"}),
        ("kernel=~^Lin", {"fact": "kernel", "operator": "=~", "value": "^Lin"}),
        ("kernel=~/^Lin/", {"fact": "kernel", "operator": "=~", "value": "^Lin"}),
        ("kernel=/^Lin/", {"fact": "kernel", "operator": "=~", "value": "^Lin"}),
        ("path==/var/", {"fact": "path", "operator": "==", "value": "/var/"}),
        ("path='/var/'", {"fact": "path", "operator": "==", "value": "/var/"}),
        ("path=/var/www", {"fact": "path", "operator": "==", "value": "/var/www"}),
        ("os.family = Debian", {"fact": "os.family", "operator": "==", "value": "Debian"}),
        ("role='web server'", {"fact": "role", "operator": "==", "value": "web server"}),
        ('empty=""', {"fact": "empty", "operator": "==", "value": ""}),
        ("url=http://x/?a=b", {"fact": "url", "operator": "==", "value": "http://x/?a=b"}),
    ],
)
def test_parse_fact_term_wire_form(text: str, wire: dict[str, str]) -> None:
    assert parse_fact_term(text) == wire


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kernel", "has no operator"),
        ("=Linux", "has no fact name"),
        ("kernel=", "has no value"),
        ("my fact=1", "contains whitespace"),
        ("kernel=~/[/", "invalid regex '['"),
        ("kernel=/(/", "invalid regex '('"),
        ("a!b", "has no operator"),
    ],
)
def test_parse_fact_term_rejects(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match="fact filter") as info:
        parse_fact_term(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_parse_fact_term_rejects_non_string() -> None:
    with pytest.raises(FilterSyntaxError, match="must be a string"):
        parse_fact_term(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- match_fact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # == and !=
        ("kernel=Linux", True),
        ("kernel=linux", False),
        ("kernel!=Linux", False),
        ("kernel!=Windows", True),
        # numeric comparison when both sides are numbers
        ("version>9", True),  # "10" > "9" numerically, though not as text
        ("version<9", False),
        ("version=10.0", True),
        ("cpus=8", True),
        ("cpus=8.0", True),
        ("cpus>=8", True),
        ("cpus>8", False),
        ("cpus<=8", True),
        ("cpus<9", True),
        ("memory_gb>15", True),
        ("memory_gb<15.5", False),
        ("uptime>=86400", True),
        ("uptime>1e4", True),
        # string comparison otherwise
        ("name<abd", True),
        ("name>abd", False),
        ("name<=abc", True),
        ("name>=abc", True),
        ("kernel>Apple", True),
        ("cpus<abc", True),  # "8" < "abc" as text: one side is not a number
        # regex
        ("kernel=~^Lin", True),
        ("kernel=/ux$/", True),
        ("kernel=~/^lin/", False),
        ("kernel=~(?i)^lin", True),
        ("cpus=~^8$", True),
        # nested dotted facts, and a flat key containing dots
        ("os.family=Debian", True),
        ("os.release.major>=11", True),
        ("os.release.minor=1", False),
        ("dotted.flat=flat", True),
        # list-valued facts: any element
        ("ipaddresses=10.0.0.5", True),
        ("ipaddresses=10.0.0.6", False),
        ("ipaddresses=~^192\\.168\\.", True),
        ("ipaddresses!=10.0.0.5", False),
        ("ipaddresses!=10.0.0.6", True),
        ("ports>400", True),
        ("ports<20", False),
        ("ports.1=80", True),
        # booleans compare as true/false, case-insensitively
        ("virtual=true", True),
        ("virtual=TRUE", True),
        ("virtual=false", False),
        ("virtual!=false", True),
        ("virtual=1", False),
        ("virtual=~^true$", True),
        # mappings equal nothing
        ("os=Debian", False),
        ("os!=Debian", True),
        # empty values
        ("empty=''", True),
        ("empty!=''", False),
    ],
)
def test_match_fact(text: str, expected: bool) -> None:
    assert fact_matches(text) is expected


@pytest.mark.parametrize("operator", ["=", "==", "<", ">", "<=", ">=", "=~"])
def test_missing_fact_never_matches(operator: str) -> None:
    assert not fact_matches(f"no_such_fact{operator}x")
    assert not fact_matches(f"nothing{operator}x")  # a null fact counts as missing


def test_missing_fact_matches_not_equal() -> None:
    """``!=`` is exactly ``not ==``, so a node without the fact is selected."""
    assert fact_matches("no_such_fact!=x")
    assert fact_matches("nothing!=x")


def test_compare_directly() -> None:
    assert compare("10", ">", "9")
    assert not compare("10", ">", "abc")  # "10" < "abc" as text
    assert compare(True, "==", "True")
    assert compare(False, "==", False)
    assert compare([], "!=", "x")
    assert not compare([], "==", "x")
    assert not compare([["x"]], "==", "x")  # nested lists do not match
    assert not compare(float("nan"), "==", "1")  # NaN equals no number
    assert compare(float("nan"), "==", "nan")  # "nan" is not a number: texts compared
    assert compare(3, "==", 3.0)
    assert not compare("٣", "==", "3")  # only ASCII digits are numbers


def test_wire_fact_term_roundtrip() -> None:
    term = FactTerm.from_wire({"fact": "cpus", "operator": ">=", "value": 4, "extra": 1})
    assert term == FactTerm("cpus", ">=", 4)
    assert term.matches(NODE)
    assert term.to_wire() == {"fact": "cpus", "operator": ">=", "value": 4}
    # MCollective's typed spellings are accepted on the wire too.
    assert FactTerm.from_wire({"fact": "a", "operator": "=", "value": "b"}).operator == "=="
    assert match_fact({"fact": "virtual", "operator": "==", "value": True}, NODE)


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ("kernel=Linux", "must be an object"),
        (["kernel", "==", "Linux"], "must be an object"),
        ({"operator": "==", "value": "x"}, "'fact' must be a non-empty string, got null"),
        ({"fact": "", "operator": "==", "value": "x"}, "'fact' must be a non-empty string"),
        ({"fact": 1, "operator": "==", "value": "x"}, "got int"),
        ({"fact": "a", "operator": "===", "value": "x"}, "'operator' must be one of"),
        ({"fact": "a", "operator": None, "value": "x"}, "'operator' must be one of"),
        ({"fact": "a", "operator": "==", "value": None}, "'value' must be a string"),
        ({"fact": "a", "operator": "==", "value": [1]}, "got list"),
        ({"fact": "a", "operator": "=~", "value": "("}, "invalid regex"),
    ],
)
def test_wire_fact_term_validation(term: Any, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        match_fact(term, NODE)
    assert message in str(info.value)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("webserver", True),
        ("web", False),
        ("/^web/", True),
        ("/server$/", True),
        ("/^db/", False),
        ("nginx::config", True),
        ("/::/", True),
        ("//", True),
    ],
)
def test_match_name(pattern: str, expected: bool) -> None:
    assert match_name(pattern, NODE.classes) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("", "non-empty string"), (None, "got null"), (["a"], "got list"), ("/(/", "invalid regex")],
)
def test_match_name_rejects(pattern: Any, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        match_name(pattern, NODE.classes)
    assert message in str(info.value)


def test_parse_name_pattern() -> None:
    assert parse_name_pattern("  web  ", "class") == "web"
    assert parse_name_pattern("/web 1/", "identity") == "/web 1/"
    with pytest.raises(FilterSyntaxError, match="empty class filter"):
        parse_name_pattern("  ", "class")
    with pytest.raises(FilterSyntaxError, match="'a b' contains whitespace"):
        parse_name_pattern("a b", "agent")
    with pytest.raises(FilterSyntaxError, match=r"identity filter '/\[/': invalid regex"):
        parse_name_pattern("/[/", "identity")


@pytest.mark.parametrize(
    ("kind", "term", "expected"),
    [
        ("class", "webserver", True),
        ("class", "/^nginx::/", True),
        ("class", "db", False),
        ("identity", "web1.example.com", True),
        ("identity", "web1", False),
        ("identity", "/^web\\d+\\./", True),
        ("identity", "/^db/", False),
        ("agent", "rpcutil", True),
        ("agent", "/pup/", True),
        ("agent", "service", False),
    ],
)
def test_name_kinds(engine: FilterEngine, kind: str, term: str, expected: bool) -> None:
    wire = engine.parse(kind, term)
    assert wire == term
    assert engine.matches({kind: [wire]}, NODE) is expected


# --------------------------------------------------------------------------- compound: parsing


def test_precedence_and_binds_tighter_than_or() -> None:
    assert compound.parse("a or b and c") == compound.parse("a or (b and c)")
    assert compound.parse("a or b and c") == Or(
        (ClassTest("a"), And((ClassTest("b"), ClassTest("c"))))
    )
    assert compound.parse("a and b or c") == compound.parse("(a and b) or c")


def test_precedence_not_binds_tightest() -> None:
    assert compound.parse("not a and b") == compound.parse("(not a) and b")
    assert compound.parse("not a and b") == And((Not(ClassTest("a")), ClassTest("b")))
    assert compound.parse("!a or b") == Or((Not(ClassTest("a")), ClassTest("b")))
    assert compound.parse("not not a") == ClassTest("a")
    assert compound.parse("!!!a") == Not(ClassTest("a"))


def test_keywords_are_case_insensitive() -> None:
    assert compound.parse("a AND b Or NOT c") == compound.parse("a and b or not c")


def test_chains_stay_flat() -> None:
    assert compound.parse("a and b and c") == And(tuple(ClassTest(n) for n in "abc"))
    assert compound.parse("a or b or c") == Or(tuple(ClassTest(n) for n in "abc"))


def test_terms_parse_to_typed_nodes() -> None:
    assert compound.parse("os.family = Debian") == FactTest(FactTerm("os.family", "==", "Debian"))
    assert compound.parse("/^web/") == ClassTest("/^web/")
    assert compound.parse("has_class('web')") == Call("has_class", ("web",))
    assert compound.parse('f(1, -2.5, "x")') == Call("f", (1, -2.5, "x"))
    assert compound.parse("f('a').b.c >= 3") == Call("f", ("a",), ("b", "c"), ">=", "3")


def test_values_may_be_quoted_or_regexes() -> None:
    assert compound.parse("role='web server'") == FactTest(FactTerm("role", "==", "web server"))
    assert compound.parse('motd="a (b) c"') == FactTest(FactTerm("motd", "==", "a (b) c"))
    assert compound.parse(r"q='it\'s'") == FactTest(FactTerm("q", "==", "it's"))
    assert compound.parse(r"x =~ '\d+'") == FactTest(FactTerm("x", "=~", r"\d+"))
    assert compound.parse("path=/a b/") == FactTest(FactTerm("path", "=~", "a b"))
    assert compound.parse(r"path=/a\/b/") == FactTest(FactTerm("path", "=~", r"a\/b"))
    assert compound.parse("path=/var/www") == FactTest(FactTerm("path", "==", "/var/www"))
    assert compound.parse("path='/var/'") == FactTest(FactTerm("path", "==", "/var/"))
    assert compound.parse("x=and") == FactTest(FactTerm("x", "==", "and"))


def test_parse_is_cached() -> None:
    expression = "cached_class and cached=1"
    assert compound.parse(expression) is compound.parse(expression)


# --------------------------------------------------------------------------- compound: evaluation


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("webserver", True),
        ("dbserver", False),
        ("/^web/", True),
        ("/^nginx::/", True),
        ("webserver and base", True),
        ("webserver and dbserver", False),
        ("webserver or dbserver", True),
        ("not dbserver", True),
        ("!dbserver", True),
        ("! webserver", False),
        # precedence: evaluated as "webserver or (dbserver and nothing)"
        ("webserver or dbserver and nothing", True),
        ("(webserver or dbserver) and nothing", False),
        # "not" applies to "dbserver" only
        ("not dbserver and webserver", True),
        ("not (dbserver or webserver)", False),
        ("((webserver))", True),
        ("WEBSERVER", False),  # class names are case-sensitive
        ("kernel=Linux and cpus>=8", True),
        ("kernel = Linux and (cpus > 8 or os.family == Debian)", True),
        ("version > 9", True),
        ("name < abd", True),
        ("os.release.major >= 12", True),
        ("ipaddresses =~ /^192\\.168\\./", True),
        ("kernel=/^lin/", False),
        ("role = 'web server'", True),
        ("role = web", False),
        ("missing != x", True),
        ("missing = x", False),
        ("virtual = true and not virtual = false", True),
        ("path=/var/www", True),
        ("path=/www$/", True),
        ("path=~/\\/var\\//", True),
        ("kernel=Linux AND NOT dbserver OR nothing", True),
    ],
)
def test_compound_evaluation(engine: FilterEngine, expression: str, expected: bool) -> None:
    assert s(expression, engine) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("fact('os.family') = Debian", True),
        ("fact('os.family') = RedHat", False),
        ("fact('os').family = Debian", True),
        ("fact('os').release.major > 9", True),
        ("fact('os').nope = x", False),
        ("fact('os').nope != x", True),
        ("fact('ports').2 = 443", True),
        ("fact('cpus') >= 4", True),
        ("fact('missing') = x", False),
        ("fact('kernel')", True),
        ("fact('empty')", False),
        ("fact('missing')", False),
        ("has_fact('empty')", True),
        ("has_fact('missing')", False),
        ("has_class('webserver')", True),
        ("has_class('/^base$/')", True),
        ("has_class('db')", False),
        ("not has_class('db') and has_agent('puppet')", True),
        ("identity()", True),
        ("identity() = web1.example.com", True),
        ("identity() =~ /^web\\d/", True),
        ("identity() = db1", False),
    ],
)
def test_compound_functions(engine: FilterEngine, expression: str, expected: bool) -> None:
    assert s(expression, engine) is expected


def test_plugin_functions_are_called_with_node_and_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    def record(node: NodeView, *args: Any) -> dict[str, Any]:
        calls.append((node.identity, *args))
        return {"load": [0.5, 1.5]}

    engine = FilterEngine({}, {"stats": record})
    assert compound.matches("stats('x', 2, 1.5).load.1 > 1", NODE, engine)
    assert calls == [("web1.example.com", "x", 2, 1.5)]


# --------------------------------------------------------------------------- compound: errors


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("(a", "this '(' is never closed"),
        ("((a)", "this '(' is never closed"),
        ("a)", "this ')' has no matching '('"),
        ("(a))", "this ')' has no matching '('"),
        ("()", "empty parentheses"),
        ("a and", "expected a term after 'and'"),
        ("a or", "expected a term after 'or'"),
        ("not", "expected a term after 'not'"),
        ("and a", "'and' needs a term on its left"),
        ("(or a)", "'or' needs a term on its left"),
        ("a and or b", "expected a term after 'and', found 'or'"),
        ("(a and)", "expected a term before ')'"),
        ("a b", "unexpected 'b'"),
        ("(a b)", "unexpected 'b'; expected 'and', 'or' or ')'"),
        ("a =", "operator '=' needs a value after it"),
        ("(a = )", "operator '=' needs a value after it"),
        ("= a", "operator '=' has no fact name on its left"),
        ("'quoted'", "a quoted string cannot stand alone"),
        ("a = 'open", "unterminated string"),
        ("/abc", "unterminated regex"),
        ("/[/", "invalid regex '['"),
        ("a =~ /(/", "invalid regex '('"),
        ("a = /(/", "invalid regex '('"),
        ("f(x)", "arguments of f() must be quoted strings or numbers"),
        ("f(/x/)", "arguments of f() must be quoted strings or numbers"),
        ("f('a' 'b')", "expected ',' or ')' in the arguments of f()"),
        ("f('a',)", "arguments of f() must be quoted strings or numbers"),
        ("f('a'", "this '(' is never closed"),
        ("f().", "expected a field name after '.'"),
        ("f().a..b", "expected a field name after '.'"),
        ("a, b", "unexpected ','"),
    ],
)
def test_malformed_expressions(engine: FilterEngine, expression: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        s(expression, engine)
    text = str(info.value)
    assert message in text
    assert repr(expression) in text
    assert "at position" in text


def test_error_message_points_at_the_fault() -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compound.parse("webserver and (db or x")
    lines = str(info.value).splitlines()
    assert lines[1].strip() == "webserver and (db or x"
    assert lines[2].index("^") == lines[1].index("(")


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    depth = compound.MAX_NESTING + 1
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        compound.parse("(" * depth + "a" + ")" * depth)
    with pytest.raises(FilterSyntaxError, match="nested more than"):
        compound.parse("(" * 100_000)


def test_maximum_nesting_still_evaluates(engine: FilterEngine) -> None:
    depth = compound.MAX_NESTING
    expression = "(x or " * depth + "webserver" + ")" * depth
    assert s(expression, engine)
    assert s("not " * 10_001 + "dbserver", engine)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("nope()", "unknown function nope() at position 0; available: fact, has_agent"),
        ("a or nope('x') = 1", "unknown function nope() at position 5"),
        ("fact()", "function fact() at position 0 failed: TypeError"),
        ("fact(3)", "fact() takes a string argument, got 3"),
        ("has_class('')", "non-empty string"),
        ("has_class('/(/')", "invalid regex"),
    ],
)
def test_evaluation_errors(engine: FilterEngine, expression: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        s(expression, engine, NodeView("db1"))
    assert message in str(info.value)
    assert repr(expression) in str(info.value)


def test_plugin_function_failures_become_syntax_errors() -> None:
    def broken(node: NodeView) -> Any:
        raise KeyError("boom")

    with pytest.raises(FilterSyntaxError, match="broken\\(\\) at position 0 failed: KeyError"):
        compound.matches("broken()", NODE, FilterEngine({}, {"broken": broken}))


@pytest.mark.parametrize(("expression", "called"), [
    ("role=web", ()),
    ("has_class('x') and not (fact('a') = 1 or has_class('y'))", ("has_class", "fact")),
    ("b() or a() and b()", ("b", "a")),
])
def test_functions_called(expression: str, called: tuple[str, ...]) -> None:
    assert compound.functions_called(expression) == called


def test_engine_check_refuses_unknown_functions_naming_them() -> None:
    engine = FilterEngine({k.name: k for k in builtin.orch_filter_kinds()},
                          {"has_class": lambda node, name: True})
    engine.check({"compound": ["has_class('a')"]})
    with pytest.raises(FilterSyntaxError,
                       match=r"unknown function nope\(\); available: has_class\(\)"):
        engine.check({"compound": ["has_class('a') and nope()"]})


def test_non_string_compound_term(engine: FilterEngine) -> None:
    with pytest.raises(FilterSyntaxError, match="must be a string, got dict"):
        engine.matches({"compound": [{"a": 1}]}, NODE)


# --------------------------------------------------------------------------- kinds and engine


def test_builtin_kinds_and_functions() -> None:
    kinds = {k.name: k.match_any for k in builtin.orch_filter_kinds()}
    assert kinds == {
        "fact": False,
        "class": False,
        "identity": True,
        "agent": False,
        "compound": False,
    }
    assert {"fact", "has_class", "identity"} <= set(builtin.orch_filter_functions())


def test_compound_kind_parse_validates_and_keeps_text(engine: FilterEngine) -> None:
    assert engine.parse("compound", "a and b") == "a and b"
    with pytest.raises(FilterSyntaxError, match="expected a term after 'and'"):
        engine.parse("compound", "a and")


def test_engine_ands_every_kind_but_ors_identities(engine: FilterEngine) -> None:
    selecting = {
        "fact": [engine.parse("fact", "kernel=Linux"), engine.parse("fact", "cpus>=4")],
        "class": ["webserver", "/^base$/"],
        "identity": ["/^web/"],
        "agent": ["rpcutil"],
        "compound": ["os.family=Debian and not dbserver"],
    }
    assert engine.matches(selecting, NODE)
    for kind, bad_term in [
        ("fact", {"fact": "kernel", "operator": "==", "value": "Windows"}),
        ("class", "dbserver"),
        ("agent", "service"),
        ("compound", "dbserver"),
    ]:
        narrowed = {**selecting, kind: [*selecting[kind], bad_term]}
        assert not engine.matches(narrowed, NODE), kind
        assert not engine.matches({kind: [bad_term]}, NODE), kind
    # A node has one identity: -I web1 -I db1 selects either.
    assert engine.matches({**selecting, "identity": ["db1", "/^web/"]}, NODE)
    assert not engine.matches({**selecting, "identity": ["db1", "db2"]}, NODE)
    assert not engine.matches({**selecting, "fact": [], "identity": ["db1"]}, NODE)


def test_empty_filter_selects_everything(engine: FilterEngine) -> None:
    assert engine.matches({}, NODE)
    assert engine.matches({"class": []}, NodeView("bare"))


def test_unknown_kind(engine: FilterEngine) -> None:
    with pytest.raises(FilterSyntaxError, match="unknown filter kind 'puppetdb'"):
        engine.matches({"puppetdb": ["x"]}, NODE)
    with pytest.raises(FilterSyntaxError, match="installed kinds: agent, class, compound"):
        engine.parse("puppetdb", "x")


# --------------------------------------------------------------------------- build_filter


def test_build_filter(engine: FilterEngine) -> None:
    assert filterargs.build_filter(
        engine,
        fact=["kernel=Linux"],
        classes=["webserver"],
        identities=["/^web/"],
        agents=["rpcutil"],
        compound=["a or b"],
        with_=["os.family=Debian base", "cpus>=4"],
    ) == {
        "fact": [
            {"fact": "kernel", "operator": "==", "value": "Linux"},
            {"fact": "os.family", "operator": "==", "value": "Debian"},
            {"fact": "cpus", "operator": ">=", "value": "4"},
        ],
        "class": ["webserver", "base"],
        "identity": ["/^web/"],
        "agent": ["rpcutil"],
        "compound": ["a or b"],
    }


def test_build_filter_omits_empty_kinds(engine: FilterEngine) -> None:
    assert filterargs.build_filter(engine) == {}
    assert filterargs.build_filter(engine, with_=["webserver /^nginx/"]) == {
        "class": ["webserver", "/^nginx/"]
    }
    assert filterargs.build_filter(engine, with_=["kernel=~/^Lin/"]) == {
        "fact": [{"fact": "kernel", "operator": "=~", "value": "^Lin"}]
    }


def test_build_filter_reports_bad_terms(engine: FilterEngine) -> None:
    with pytest.raises(FilterSyntaxError, match="has no operator"):
        filterargs.build_filter(engine, fact=["kernel"])
    with pytest.raises(FilterSyntaxError, match="unbalanced parentheses"):
        filterargs.build_filter(engine, compound=["(a"])


def test_build_filter_result_selects(engine: FilterEngine) -> None:
    wire = filterargs.build_filter(engine, with_=["kernel=Linux webserver"], agents=["puppet"])
    assert engine.matches(wire, NODE)
    assert not engine.matches(wire, NodeView("db1", {"kernel": "Linux"}))


# --------------------------------------------------------------------------- properties

_GRAMMAR_PIECES = st.sampled_from(
    [
        "and", "or", "not", "AND", "!", "(", ")", "(", ")", ",", ".", "=", "==", "!=", "<",
        ">", "<=", ">=", "=~", "=>", "/", "/x/", "/[/", "'", '"', "'q r'", "\\", " ", "a",
        "os.family", "ports", "1", "-2.5", "fact(", "fact('os')", "has_class('web')",
        "identity()", "nope(", ".family", "~", "²", "ports.²", "\n", "\t",
    ]
)  # fmt: skip
_EXPRESSIONS = st.text() | st.lists(_GRAMMAR_PIECES, max_size=30).map("".join)

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["/x/", "/[/", "//", "==", "=~", "fact", "ports", "os.family"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_FACT_TERMS = st.fixed_dictionaries(
    {
        "fact": st.sampled_from(["kernel", "ports", "os", "os.family", "ports.²", "x"]) | _JSON,
        "operator": st.sampled_from(["==", "!=", "<", ">", "<=", ">=", "=~", "="]) | _JSON,
        "value": _JSON,
    }
)
_FUZZ_NODE = NodeView(
    "fuzz",
    {
        "ports": [1, "2", None, [3], {"a": 1}, True, 1.5],
        "os": {"family": "Debian"},
        "nan": float("nan"),
        "huge": 10**5000,
    },
    frozenset({"web"}),
)


def _only_syntax_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(FilterSyntaxError):
        call(*args)


@settings(max_examples=500)
@given(_EXPRESSIONS)
def test_compound_raises_only_syntax_errors(expression: str) -> None:
    engine = FilterEngine(
        {k.name: k for k in builtin.orch_filter_kinds()}, builtin.orch_filter_functions()
    )
    _only_syntax_errors(compound.matches, expression, _FUZZ_NODE, engine)
    _only_syntax_errors(compound.matches, expression, NODE, engine)


@settings(max_examples=300)
@given(st.text() | st.lists(_GRAMMAR_PIECES, max_size=10).map("".join))
def test_parse_fact_term_raises_only_syntax_errors(text: str) -> None:
    try:
        wire = parse_fact_term(text)
    except FilterSyntaxError:
        return
    assert set(wire) == {"fact", "operator", "value"}
    _only_syntax_errors(match_fact, wire, _FUZZ_NODE)


@settings(max_examples=300)
@given(st.sampled_from(["fact", "class", "identity", "agent", "compound"]), _JSON | _FACT_TERMS)
def test_wire_terms_raise_only_syntax_errors(kind: str, term: Any) -> None:
    engine = FilterEngine(
        {k.name: k for k in builtin.orch_filter_kinds()}, builtin.orch_filter_functions()
    )
    for node in (_FUZZ_NODE, NODE):
        _only_syntax_errors(engine.matches, {kind: [term]}, node)


@given(st.text(min_size=1).filter(lambda text: not text.startswith("/")))
def test_plain_names_match_only_themselves(name: str) -> None:
    assert match_name(name, {name})
    assert not match_name(name, {name + "x"})
