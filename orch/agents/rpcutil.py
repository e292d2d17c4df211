"""rpcutil: what a node can say about itself — liveness, facts, agents and daemon counters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import orch
from orch.core.agent import ActionReply, ActionRequest, Agent, action
from orch.core.hookspecs import hookimpl
from orch.core.protocol import Status


class Rpcutil(Agent):
    name = "rpcutil"
    ddl_file = "rpcutil.json"
    simulation_safe = True

    @action
    def ping(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["pong"] = time.time()

    @action
    def inventory(self, request: ActionRequest, reply: ActionReply) -> None:
        view = self.node.view()
        reply["agents"] = sorted(view.agents)
        reply["facts"] = dict(view.facts)
        reply["classes"] = sorted(view.classes)
        reply["version"] = orch.__version__
        reply["main_collective"] = self.node.collective
        reply["collectives"] = [self.node.collective]
        reply["stats"] = self.node.statistics()

    @action
    def get_fact(self, request: ActionRequest, reply: ActionReply) -> None:
        name = request.data["fact"]
        reply["fact"] = name
        reply["value"] = self.node.view().fact(name)

    @action
    def get_facts(self, request: ActionRequest, reply: ActionReply) -> None:
        view = self.node.view()
        # Commas or white space separate names: "os.name role" is two facts, never one
        # odd key that silently answers null.
        names = [name for name in re.split(r"[,\s]+", request.data["facts"]) if name]
        if not names:
            reply.fail("no fact names given: facts=os.name,role", Status.INVALID_DATA)
            return
        reply["values"] = {name: view.fact(name) for name in names}

    @action
    def agent_inventory(self, request: ActionRequest, reply: ActionReply) -> None:
        agents = []
        for name in sorted(self.node.view().agents):
            ddl = self.node.agent_ddl(name)
            agents.append({
                "agent": name, "name": ddl.name, "description": ddl.description,
                "version": ddl.version, "author": ddl.author, "license": ddl.license,
                "timeout": ddl.timeout,
            })
        reply["agents"] = agents

    @action
    def daemon_stats(self, request: ActionRequest, reply: ActionReply) -> None:
        for key, value in self.node.statistics().items():
            reply[key] = value

    @action
    def collective_info(self, request: ActionRequest, reply: ActionReply) -> None:
        reply["main_collective"] = self.node.collective
        reply["collectives"] = [self.node.collective]


@hookimpl
def orch_agents() -> Iterable[type[Agent]]:
    return [Rpcutil]


@hookimpl
def orch_agent_names() -> Iterable[str]:
    return [Rpcutil.name]
