"""orch-testplugin: a third-party plugin as a user would write one.

It adds the ``greeter`` agent (with a DDL shipped as package data) and the compound-filter
function ``greeting_length()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orch.core.agent import ActionReply, ActionRequest, Agent, action
from orch.core.hookspecs import hookimpl


class Greeter(Agent):
    name = "greeter"
    ddl_file = "greeter.json"

    @action
    def greet(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["message"] = f"{request.data['greeting']}, {request.data['name']}"


def greeting_length(node: Any, text: str) -> int:
    return len(text)


@hookimpl
def orch_agents() -> Iterable[type[Agent]]:
    return [Greeter]


@hookimpl
def orch_filter_functions() -> Mapping[str, Callable[..., Any]]:
    return {"greeting_length": greeting_length}
