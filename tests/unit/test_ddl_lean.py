"""DDL checks without jsonschema where it is not needed.

Schemas that only say ``type``, ``enum``, ``maxLength`` and ``pattern`` (every reply
schema, and actions without named validators) are checked by
:class:`orch.ddl.compile.DirectChecker`, which must report exactly what jsonschema reports,
in the same order; a DDL text that passed
every check once is not re-checked against the meta-schema by later processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.ddl import compile as ddl_compile
from orch.ddl import model
from orch.ddl.builtin import VALIDATORS
from orch.ddl.model import ActionDDL, DDLError, InputDDL, OutputDDL, load_ddl

TYPES = ["string", "integer", "number", "float", "boolean", "hash", "array", "any"]
NAMES = st.sampled_from(["a", "b", "c", "d"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.0, 1.5, 2.0, -3.0])
    | st.sampled_from(["", "x", "web", "1", "web\n", "abcd", "é"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner,
                                                                max_size=2),
    max_leaves=4,
)


@st.composite
def actions(draw: st.DrawFn) -> ActionDDL:
    inputs = {}
    for name in draw(st.lists(NAMES, unique=True, max_size=4)):
        kind = draw(st.sampled_from([*TYPES, "list"]))
        values = tuple(draw(st.lists(st.sampled_from(["x", "web", "1"]), min_size=1,
                                     unique=True))) if kind == "list" else ()
        maxlength = draw(st.sampled_from([None, 1, 3])) if kind == "string" else None
        validation = draw(st.sampled_from([None, "^[a-z]+$", "w.b", "^x", r"\d"])) if (
            kind == "string") else None
        inputs[name] = InputDDL(name, type=kind, optional=draw(st.booleans()), values=values,
                                maxlength=maxlength, validation=validation)
    outputs = {}
    for name in draw(st.lists(NAMES, unique=True, max_size=4)):
        outputs[name] = OutputDDL(name, type=draw(st.sampled_from(TYPES)),
                                  default=draw(st.sampled_from([None, 0, "x"])))
    return ActionDDL("generated", inputs=inputs, outputs=outputs)


def errors_of(validator: Any, data: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    return [(e.validator, tuple(e.absolute_path)) for e in validator.iter_errors(data)]


@settings(max_examples=400, deadline=None)
@given(action=actions(), data=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]),
                                              JSON_VALUES, max_size=5))
def test_direct_checker_reports_what_jsonschema_reports(action: ActionDDL,
                                                        data: dict[str, Any]) -> None:
    for schema in (ddl_compile.input_schema(action), ddl_compile.output_schema(action)):
        assert ddl_compile.DirectChecker.applies(schema)
        assert errors_of(ddl_compile.DirectChecker(schema), data) == errors_of(
            ddl_compile.validator_class()(schema), data), schema


def test_named_validators_still_go_to_jsonschema() -> None:
    action = ActionDDL("x", inputs={"a": InputDDL("a", validation="shellsafe")})
    assert not ddl_compile.DirectChecker.applies(ddl_compile.input_schema(action))
    with pytest.raises(Exception, match="argument 'a' is not a valid shellsafe value"):
        action.check_arguments({"a": "ls; reboot"}, VALIDATORS)


def test_messages_for_directly_checked_actions_name_the_argument() -> None:
    action = ActionDDL("x", inputs={"n": InputDDL("n", type="integer", optional=False),
                                    "c": InputDDL("c", type="list", values=("a", "b")),
                                    "s": InputDDL("s", maxlength=3, validation="^[a-z]+$")})
    cases = [({}, "argument 'n' is required"),
             ({"n": 1, "z": 2}, "unknown argument(s) z for x; it takes n, c, s"),
             ({"n": "1"}, "argument 'n' must be of type integer, got '1'"),
             ({"n": 1, "c": "d"}, "argument 'c' must be one of a, b"),
             ({"n": 1, "s": "abcd"}, "argument 's' is longer than 3 characters"),
             ({"n": 1, "s": "ab\n"}, "argument 's' does not match ^[a-z]+$")]
    for data, message in cases:
        with pytest.raises(Exception) as caught:
            action.check_arguments(data)
        assert str(caught.value) == message
    assert action.check_arguments({"n": 3.0}) == {"n": 3}


LEAN_PING = """
import json, sys
from orch.agents.rpcutil import Rpcutil
ping = Rpcutil.ddl().action("ping")
ping.check_arguments({})
Rpcutil.ddl().action("get_fact").check_arguments({"fact": "os.family"})
print(json.dumps([ping.check_reply({"pong": 1.5}), ping.check_reply({"pong": "x"}),
                  "jsonschema" in sys.modules]))
"""


def test_rpcutil_is_checked_without_importing_jsonschema(tmp_path: Path) -> None:
    env = {"ORCH_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", LEAN_PING], env=env, capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)[:2] == [[], ["output 'pong' must be of type number, "
                                                 "got 'x'"]]
    again = subprocess.run([sys.executable, "-c", LEAN_PING], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == [[], ["output 'pong' must be of type number, got 'x'"],
                                        False]


GOOD = Path(__file__).resolve().parent / "ddl_samples" / "good"


@pytest.fixture
def ddl_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path))
    model._checked_digests.cache_clear()
    yield tmp_path
    model._checked_digests.cache_clear()


def test_a_checked_ddl_text_is_not_checked_again(ddl_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = sorted(GOOD.glob("*.json"))[0]
    checked = load_ddl(source)
    model._checked_digests.cache_clear()  # as a new process would start

    def refuse(raw: Any, where: str) -> None:
        raise AssertionError("checked again")

    monkeypatch.setattr(model, "_check_schema", refuse)
    assert repr(load_ddl(source)) == repr(checked)  # ActionDDL compares by identity


def test_a_changed_ddl_text_is_checked_again(ddl_cache: Path, tmp_path: Path) -> None:
    source = sorted(GOOD.glob("*.json"))[0]
    load_ddl(source)
    model._checked_digests.cache_clear()
    broken = json.loads(source.read_text())
    del broken["metadata"]["author"]
    with pytest.raises(DDLError, match="'author' is a required property"):
        load_ddl("broken.json", json.dumps(broken))


def test_the_compiled_validator_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """DDLs replaced by a SIGHUP rescan must not stay alive in the cache forever."""
    from orch.ddl import compile as ddl_compile
    from orch.ddl.model import ActionDDL, InputDDL

    monkeypatch.setattr(ddl_compile, "CACHE_SIZE", 8)
    for n in range(50):
        action = ActionDDL(f"a{n}", inputs={"x": InputDDL("x", type="string")})
        assert action.check_arguments({"x": "y"}, {}) == {"x": "y"}
    assert len(ddl_compile._cache) <= 8


def test_the_ddl_compiler_imports_no_plugin() -> None:
    import ast
    from pathlib import Path

    from orch.ddl import compile as ddl_compile

    tree = ast.parse(Path(ddl_compile.__file__).read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert "orch.ddl.builtin" not in imported
