"""The agent class every external agent becomes: each DDL action runs the executable."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from orch.agents.external.call import _call
from orch.agents.external.reply import _log_output, _rpc_reply
from orch.agents.external.settings import PROTOCOL_RPC_REQUEST, SCHEMA_RPC_REQUEST, Limits
from orch.core.agent import ActionMethod, ActionReply, ActionRequest, Agent
from orch.core.config import Settings
from orch.core.protocol import Status
from orch.ddl.model import AgentDDL

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")




class ExternalAgent(Agent):
    """Base of the classes :func:`scan` builds, one per external agent.

    Every action the DDL declares runs the executable; the server and client see an
    ordinary agent with a DDL.
    """

    #: The agent's executable and DDL file, set on each generated subclass.
    executable: ClassVar[Path]
    ddl_path: ClassVar[Path]
    _external_ddl: ClassVar[AgentDDL]
    #: Extra seconds the server's deadline may give this agent beyond the DDL timeout: the
    #: agent enforces the timeout itself (killing its process group), and its own
    #: "timed out" reply is more useful than the runner's generic one.
    deadline_grace: ClassVar[float] = 1.0

    @classmethod
    def ddl(cls) -> AgentDDL:
        return cls._external_ddl

    @classmethod
    def actions(cls) -> dict[str, ActionMethod]:
        return dict.fromkeys(cls._external_ddl.actions, ExternalAgent.invoke)

    def invoke(self, request: ActionRequest, reply: ActionReply) -> None:
        """Run the executable for ``request`` and fill ``reply``; never raises."""
        try:
            result = self._invoke(request)
        except Exception as exc:  # an orch bug: still answer, and keep the traceback
            log.exception("agent=%s action=%s request=%s external call failed", self.name,
                          request.action, request.request_id)
            result = ActionReply(statuscode=Status.ABORTED, statusmsg=(
                f"{self.name}.{request.action} could not be run: "
                f"{type(exc).__name__}: {exc}"))
        reply.data.update(result.data)
        reply.statuscode, reply.statusmsg = result.statuscode, result.statusmsg

    def _invoke(self, request: ActionRequest) -> ActionReply:
        ddl = self.ddl()
        settings = _node_settings(self.node)
        limits = Limits.from_settings(settings)
        started = time.monotonic()
        deadline = started + ddl.timeout
        server_deadline = getattr(request, "deadline", None)
        if isinstance(server_deadline, int | float) and server_deadline < deadline:
            deadline = server_deadline  # the request's TTL runs out first
        msgtime = getattr(request, "time", None)
        ttl = getattr(request, "ttl", None)
        payload = {
            "$schema": SCHEMA_RPC_REQUEST,
            "protocol": PROTOCOL_RPC_REQUEST,
            "agent": self.name,
            "action": request.action,
            "requestid": request.request_id,
            "senderid": request.sender,
            "callerid": request.caller,
            "collective": getattr(self.node, "collective", ""),
            "ttl": int(ttl if isinstance(ttl, int | float) else
                       settings.ttl if settings is not None else 60),
            "msgtime": int(msgtime if isinstance(msgtime, int | float) else time.time()),
            "data": dict(request.data),
        }
        outcome = _call(self.executable, PROTOCOL_RPC_REQUEST, payload, deadline=deadline,
                        limits=limits, facts=_node_facts(self.node),
                        config=settings.plugin(self.name) if settings is not None else {})
        context = f"agent={self.name} action={request.action} request={request.request_id}"
        _log_output(outcome, context)
        reply = _rpc_reply(outcome, f"{self.name}.{request.action}", deadline - started,
                           limits, ddl.action(request.action))
        level = logging.DEBUG if reply.statuscode == Status.OK else logging.WARNING
        log.log(level, "%s finished in %.3fs: %s %s", context, outcome.elapsed,
                reply.statuscode.label, reply.statusmsg)
        return reply


def _node_settings(node: Any) -> Settings | None:
    settings = getattr(node, "settings", None)
    return settings if isinstance(settings, Settings) else None


def _node_facts(node: Any) -> Mapping[str, Any]:
    try:
        return dict(node.view().facts)
    except Exception:  # a node context without facts still runs agents
        return {}
