"""The shortcuts every node takes around jsonschema give exactly jsonschema's verdicts.

A node checks each request's arguments and each reply against the DDL. For an action
without inputs called without arguments, and for a reply whose values plainly have their
declared types, orch answers without running a validator (orch.ddl.conform); anything else
still goes to jsonschema. These tests compare the two on every DDL type and awkward value.
"""

from __future__ import annotations

from typing import Any

import pytest

from orch.core.errors import ArgumentError
from orch.core.runner import InlineRunner
from orch.ddl import compile as ddl_compile
from orch.ddl import conform
from orch.ddl.model import ActionDDL, InputDDL, OutputDDL

TYPES = ("string", "integer", "number", "float", "boolean", "hash", "array", "list", "any",
         "unknown-type")
VALUES: list[Any] = [None, "text", "", 0, 1, -3, 1.0, 2.5, True, False, {}, {"a": 1}, [],
                     [1, "x"], float("inf")]


def _action(type_: str, default: Any = None) -> ActionDDL:
    return ActionDDL("act", outputs={"out": OutputDDL("out", type=type_, default=default)})


@pytest.mark.parametrize("default", [None, "set"], ids=["no-default", "default"])
@pytest.mark.parametrize("type_", TYPES)
def test_reply_shortcut_agrees_with_jsonschema(type_: str, default: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    action = _action(type_, default)
    fast = {repr(value): ddl_compile.check_reply(action, {"out": value}) for value in VALUES}
    monkeypatch.setattr(conform, "plainly_conforms", lambda action, data: False)
    slow = {repr(value): ddl_compile.check_reply(action, {"out": value}) for value in VALUES}
    assert fast == slow


def test_reply_shortcut_leaves_undeclared_outputs_to_jsonschema() -> None:
    problems = ddl_compile.check_reply(_action("string"), {"out": "x", "extra": 1})
    assert problems == ["undeclared output(s) extra"]


def test_arguments_shortcut_only_for_no_inputs_and_no_arguments() -> None:
    no_inputs = ActionDDL("ping")
    assert ddl_compile.check_arguments(no_inputs, {}) == {}
    with pytest.raises(ArgumentError):
        ddl_compile.check_arguments(no_inputs, {"surprise": 1})
    with_input = ActionDDL("get", inputs={"fact": InputDDL("fact", optional=False)})
    with pytest.raises(ArgumentError):
        ddl_compile.check_arguments(with_input, {})


def test_inline_runner_reports_the_result_and_survives_a_raising_job() -> None:
    runner = InlineRunner()
    results: list[int] = []
    timeouts: list[bool] = []
    runner.submit(lambda: 42, 0.0, results.append, lambda: timeouts.append(True))

    def broken() -> int:
        raise RuntimeError("boom")

    runner.submit(broken, 0.0, results.append, lambda: timeouts.append(True))
    runner.shutdown()
    assert results == [42] and timeouts == []
