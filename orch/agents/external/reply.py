"""Turning a finished call into orch's reply: the agent's own, or ``aborted`` and why; and
the agent's output in the daemon log."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Mapping
from typing import Any

from orch.agents.external.process import _Capture, _Outcome
from orch.agents.external.settings import ENV_REPLY, Limits
from orch.core.agent import ActionReply
from orch.core.protocol import Status
from orch.ddl.model import ActionDDL

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")




def _tail(capture: _Capture, limit: int = 300) -> str:
    """``": <last stderr line>"``, the most useful hint a failing agent usually leaves."""
    for line in reversed(bytes(capture.data).decode("utf-8", "replace").splitlines()):
        if line.strip():
            text = line.strip()
            return f": {text[:limit]}{'…' if len(text) > limit else ''}"
    return ""


def _process_failure(outcome: _Outcome, limits: Limits, budget: float | None = None
                     ) -> str | None:
    """The failures that leave no reply to look at: start, timeout, size, signal."""
    if outcome.spawn_error is not None:
        return outcome.spawn_error
    if outcome.timed_out:
        seconds = budget if budget is not None else outcome.elapsed
        return f"timed out after {round(seconds, 1):g}s; its process group was killed"
    if outcome.reply_too_large:
        return (f"produced output too large: the reply file exceeded "
                f"{limits.max_reply_bytes} bytes")
    if outcome.returncode is not None and outcome.returncode < 0:
        try:
            name = signal.Signals(-outcome.returncode).name
        except ValueError:
            name = f"signal {-outcome.returncode}"
        return f"was killed by {name}{_tail(outcome.stderr)}"
    if outcome.reply_error is not None:
        return outcome.reply_error
    return None


def _rpc_reply(outcome: _Outcome, what: str, budget: float, limits: Limits,
               action: ActionDDL | None) -> ActionReply:
    """Map a finished call onto orch's reply: the agent's own, or ``aborted`` and why."""
    failure = _process_failure(outcome, limits, budget)
    if failure is not None:
        return ActionReply(statuscode=Status.ABORTED, statusmsg=f"{what} {failure}")
    parsed: Mapping[str, Any] | None = None
    problem = None
    if outcome.reply is None:
        problem = f"wrote no reply to ${ENV_REPLY}"
    else:
        try:
            value = json.loads(outcome.reply)
        except ValueError as exc:
            problem = f"wrote a reply that is not valid JSON ({exc})"
        else:
            if isinstance(value, dict):
                parsed = value
            else:
                problem = f"wrote a JSON {type(value).__name__} as its reply, not an object"
    if parsed is not None:
        reply, problem = _parse_reply(parsed)
    else:
        reply = ActionReply()
    if outcome.returncode:
        # Non-zero exit fails the call even with a reply (as in Choria); the agent's own
        # message, when it wrote one, says more than its exit status.
        hint = (f": {reply.statusmsg}" if parsed is not None and problem is None
                and reply.statuscode != Status.OK else _tail(outcome.stderr))
        status = reply.statuscode if reply.statuscode != Status.OK else Status.ABORTED
        reply.fail(f"{what} exited with status {outcome.returncode}{hint}", status)
        return reply
    if problem is not None:
        return ActionReply(statuscode=Status.ABORTED,
                           statusmsg=f"{what} {problem}{_tail(outcome.stderr)}")
    if action is not None:  # Choria fills in the DDL's output defaults too
        for name, output in action.outputs.items():
            if output.default is not None and name not in reply.data:
                reply.data[name] = output.default
    return reply


def _parse_reply(value: Mapping[str, Any]) -> tuple[ActionReply, str | None]:
    """``statuscode``/``statusmsg``/``data`` → ActionReply, or what is wrong with them."""
    code = value.get("statuscode", 0)
    try:
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError(code)
        status = Status(code)
    except ValueError:
        return ActionReply(), f"wrote a reply with an invalid statuscode {code!r} (0-5)"
    message = value.get("statusmsg")
    if message is None or message == "":
        message = "OK" if status == Status.OK else status.label
    if not isinstance(message, str):
        return ActionReply(), "wrote a reply whose statusmsg is not a string"
    data = value.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return ActionReply(), f"wrote a reply whose data is a {type(data).__name__}, " \
                              "not an object"
    return ActionReply(data=dict(data), statuscode=status, statusmsg=message), None


def _log_output(outcome: _Outcome, context: str) -> None:
    """The agent's stdout (INFO) and stderr (WARNING) lines, in the daemon log."""
    for stream, capture, level in (("stdout", outcome.stdout, logging.INFO),
                                   ("stderr", outcome.stderr, logging.WARNING)):
        if not log.isEnabledFor(level):
            continue
        for line in bytes(capture.data).decode("utf-8", "replace").splitlines():
            if line.strip():
                log.log(level, "%s %s: %s", context, stream, line)
        if capture.dropped:
            log.log(level, "%s %s: … %d more bytes not logged (limit %d)", context, stream,
                    capture.dropped, capture.limit)
