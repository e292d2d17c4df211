"""Typing ``key=value`` arguments (with and without a DDL) and checking them against a DDL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.errors import ArgumentError
from orch.ddl.arguments import convert, guess, parse_arguments
from orch.ddl.model import ActionDDL, InputDDL, parse_ddl

FUZZ = settings(max_examples=150, deadline=None)


def action(**inputs: InputDDL) -> ActionDDL:
    return ActionDDL("act", inputs={name: spec for name, spec in inputs.items()})


TYPED = action(
    text=InputDDL("text", "string"),
    count=InputDDL("count", "integer"),
    ratio=InputDDL("ratio", "number"),
    scale=InputDDL("scale", "float"),
    flag=InputDDL("flag", "boolean"),
    items=InputDDL("items", "array"),
    array=InputDDL("array", "array"),
    mapping=InputDDL("mapping", "hash"),
    anything=InputDDL("anything", "any"),
)


def error_kind(exc: BaseException) -> str | None:
    return getattr(exc, "kind", None)


# --------------------------------------------------------------------- without a DDL


@pytest.mark.parametrize(("pair", "expected"), [
    ("n=10", 10),
    ("n=-3", -3),
    ("n=2.5", 2.5),
    ("n=1e3", 1000.0),
    ("b=true", True),
    ("b=false", False),
    ("x=null", None),
    ('l=[1, "a", null]', [1, "a", None]),
    ('o={"k": [1, 2]}', {"k": [1, 2]}),
    ("s=hello", "hello"),
    ("s=hello world", "hello world"),
    ("s=", ""),
    ('s="quoted"', "quoted"),
    ("s=yes", "yes"),
    ("s=True", "True"),
    ("s=[unclosed", "[unclosed"),
    ("url=http://x/?a=b", "http://x/?a=b"),
])
def test_untyped_values_are_guessed_as_json(pair: str, expected: Any) -> None:
    key = pair.partition("=")[0]
    assert parse_arguments([pair]) == {key: expected}


def test_untyped_value_may_contain_equals_signs() -> None:
    assert parse_arguments(["expr=a=b=c"]) == {"expr": "a=b=c"}


def test_several_arguments() -> None:
    assert parse_arguments(["a=1", "b=x", "c=[]"]) == {"a": 1, "b": "x", "c": []}


def test_no_arguments() -> None:
    assert parse_arguments([]) == {}
    assert parse_arguments([], TYPED) == {}


@pytest.mark.parametrize("pair", ["novalue", "", "=value", "=", "just text"])
def test_missing_equals_or_name_is_an_error(pair: str) -> None:
    with pytest.raises(ArgumentError, match="must look like name=value") as caught:
        parse_arguments(["ok=1", pair])
    assert repr(pair) in str(caught.value)


# --------------------------------------------------------------------- with a DDL


@pytest.mark.parametrize(("pair", "expected"), [
    ("text=10", "10"),
    ("text=true", "true"),
    ("text=null", "null"),
    ("text=[1]", "[1]"),
    ("text=", ""),
    ("count=10", 10),
    ("count=-7", -7),
    ("ratio=2", 2),
    ("ratio=2.0", 2.0),
    ("ratio=0.25", 0.25),
    ("scale=3", 3),
    ("scale=1.5", 1.5),
    ("flag=true", True),
    ("flag=YES", True),
    ("flag=on", True),
    ("flag=1", True),
    ("flag=false", False),
    ("flag=No", False),
    ("flag=off", False),
    ("flag=0", False),
    ("items=[1, 2]", [1, 2]),
    ("array=[]", []),
    ('mapping={"a": {"b": 1}}', {"a": {"b": 1}}),
    ("anything=5", 5),
    ("anything=five", "five"),
    ("undeclared=5", 5),
])
def test_ddl_types_decide(pair: str, expected: Any) -> None:
    key = pair.partition("=")[0]
    value = parse_arguments([pair], TYPED)[key]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("pair", "type_name"), [
    ("count=ten", "integer"),
    ("count=1.5", "integer"),
    ("count=", "integer"),
    ("ratio=abc", "number"),
    ("scale=", "float"),
    ("flag=maybe", "boolean"),
    ("flag=", "boolean"),
    ("items={}", "array"),
    ("items=[1,", "array"),
    ("items=3", "array"),
    ("array=\"a\"", "array"),
    ("mapping=[]", "hash"),
    ("mapping=nope", "hash"),
])
def test_bad_typed_values_name_the_argument(pair: str, type_name: str) -> None:
    key, _, text = pair.partition("=")
    with pytest.raises(ArgumentError) as caught:
        parse_arguments([pair], TYPED)
    message = str(caught.value)
    assert f"argument {key!r}" in message
    assert repr(text) in message
    assert type_name in message


@FUZZ
@given(st.text())
def test_string_inputs_keep_text_exactly(text: str) -> None:
    assert parse_arguments([f"text={text}"], TYPED) == {"text": text}


@FUZZ
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integer_inputs(number: int) -> None:
    assert parse_arguments([f"count={number}"], TYPED) == {"count": number}
    assert parse_arguments([f"ratio={number}"], TYPED) == {"ratio": number}


@pytest.mark.parametrize("text", ["9007199254740993", "-10000000000000000001"])
def test_big_integers_for_number_inputs_keep_every_digit(text: str) -> None:
    """``number`` inputs go through float(), which rounds integers beyond 2**53."""
    assert parse_arguments([f"count={text}"], TYPED) == {"count": int(text)}
    assert parse_arguments([f"ratio={text}"], TYPED) == {"ratio": int(text)}


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_inputs_round_trip_floats(number: float) -> None:
    assert parse_arguments([f"ratio={number!r}"], TYPED)["ratio"] == number


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(json_values)
def test_untyped_json_text_becomes_its_value(value: Any) -> None:
    assert parse_arguments([f"v={json.dumps(value)}"]) == {"v": value}


@FUZZ
@given(st.text())
def test_guess_never_fails(text: str) -> None:
    value = guess(text)
    if isinstance(value, str) and value != text:
        assert json.loads(text) == value


@FUZZ
@given(st.sampled_from(sorted(TYPED.inputs)), st.text())
def test_convert_raises_only_argument_error(key: str, text: str) -> None:
    try:
        convert(key, text, TYPED.inputs[key].type)
    except ArgumentError as exc:
        assert repr(key) in str(exc)


# --------------------------------------------------------------------- check_arguments

CHECKED = action(
    name=InputDDL("name", "string", optional=False, maxlength=5),
    count=InputDDL("count", "integer", optional=True, default=3),
    ratio=InputDDL("ratio", "number"),
    enabled=InputDDL("enabled", "boolean", default=False),
    tags=InputDDL("tags", "array"),
    meta=InputDDL("meta", "hash"),
    blob=InputDDL("blob", "any"),
)


def test_check_applies_defaults_and_keeps_values() -> None:
    checked = CHECKED.check_arguments({"name": "web"})
    assert checked == {"name": "web", "count": 3, "enabled": False}


def test_check_does_not_override_given_values_or_mutate_input() -> None:
    data = {"name": "web", "count": 7, "enabled": True}
    checked = CHECKED.check_arguments(data)
    assert checked == data
    assert checked is not data
    data2 = {"name": "db"}
    CHECKED.check_arguments(data2)
    assert data2 == {"name": "db"}


def test_check_unknown_argument() -> None:
    with pytest.raises(ArgumentError, match=r"unknown argument\(s\) colour, size for act") as c:
        CHECKED.check_arguments({"name": "x", "size": 1, "colour": "red"})
    assert error_kind(c.value) == "invalid"
    assert "it takes name, count" in str(c.value)


def test_check_unknown_argument_when_action_takes_none() -> None:
    with pytest.raises(ArgumentError, match="it takes none") as caught:
        ActionDDL("ping").check_arguments({"x": 1})
    assert error_kind(caught.value) == "invalid"


def test_check_missing_required() -> None:
    with pytest.raises(ArgumentError, match="argument 'name' is required") as caught:
        CHECKED.check_arguments({"count": 1})
    assert error_kind(caught.value) == "missing"


def test_required_input_with_default_is_filled() -> None:
    ddl = action(level=InputDDL("level", "integer", optional=False, default=1))
    assert ddl.check_arguments({}) == {"level": 1}


def test_integral_float_for_integer_input_becomes_int() -> None:
    # JSON Schema counts 3.0 as an integer; the action receives the int it declared.
    checked = CHECKED.check_arguments({"name": "ok", "count": 3.0})
    assert checked["count"] == 3 and isinstance(checked["count"], int)


@pytest.mark.parametrize(("name", "value"), [
    ("name", 5), ("name", None), ("name", ["web"]),
    ("count", "3"), ("count", 3.5), ("count", True), ("count", False),
    ("ratio", "1.5"), ("ratio", True),
    ("enabled", 1), ("enabled", "true"), ("enabled", None),
    ("tags", "a,b"), ("tags", {"a": 1}), ("tags", (1, 2)),
    ("meta", []), ("meta", "x"),
])
def test_check_wrong_type(name: str, value: Any) -> None:
    data = {"name": "ok", name: value}
    with pytest.raises(ArgumentError, match=f"argument '{name}' must be of type") as caught:
        CHECKED.check_arguments(data)
    assert error_kind(caught.value) == "invalid"


@pytest.mark.parametrize(("name", "value"), [
    ("count", 0), ("count", -5), ("ratio", 1), ("ratio", 1.5), ("enabled", True),
    ("tags", []), ("meta", {}), ("blob", None), ("blob", True), ("blob", [1, {"x": 2}]),
])
def test_check_right_type(name: str, value: Any) -> None:
    assert CHECKED.check_arguments({"name": "ok", name: value})[name] == value


def test_check_maxlength() -> None:
    assert CHECKED.check_arguments({"name": "abcde"})["name"] == "abcde"
    with pytest.raises(ArgumentError, match="argument 'name' is longer than 5 characters") as c:
        CHECKED.check_arguments({"name": "abcdef"})
    assert error_kind(c.value) == "invalid"


def test_check_validation_regex_is_enforced() -> None:
    """A DDL input's ``validation`` regex is shown by ``--help`` and must also be checked.

    rpcutil's ``get_fact`` declares ``"validation": "^[\\\\w\\\\-\\\\.]+$"`` for ``fact``.
    """
    ddl = parse_ddl({
        "metadata": {"name": "x", "description": "d", "author": "a", "license": "MIT",
                     "version": "1", "timeout": 5},
        "actions": [{"action": "get", "description": "d", "input": {
            "fact": {"type": "string", "optional": False, "validation": r"^[\w\-\.]+$"}}}],
    }, "inline")
    get = ddl.actions["get"]
    assert get.check_arguments({"fact": "os.family"}) == {"fact": "os.family"}
    with pytest.raises(ArgumentError, match="fact") as caught:
        get.check_arguments({"fact": "os family; rm -rf /"})
    assert error_kind(caught.value) == "invalid"


def test_parsed_then_checked_end_to_end() -> None:
    ddl = parse_ddl({
        "metadata": {"name": "svc", "description": "d", "author": "a", "license": "MIT",
                     "version": "1", "timeout": 5},
        "actions": [{"action": "restart", "description": "d", "input": {
            "service": {"type": "string", "optional": False},
            "delay": {"type": "integer", "default": 0, "optional": True},
            "force": {"type": "boolean", "optional": True},
        }}],
    }, "inline")
    restart = ddl.actions["restart"]
    data = parse_arguments(["service=123", "force=yes"], restart)
    assert restart.check_arguments(data) == {"service": "123", "delay": 0, "force": True}
