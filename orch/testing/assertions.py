"""Assertions on a call's result, and waiting for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from orch.core.client import CallResult
    from orch.core.protocol import Status


from orch.testing.fleet import _strings

T = TypeVar("T")

# ----------------------------------------------------------------------------- assertions


def describe_result(result: CallResult) -> str:
    """One line per node (status and message, or the data of an OK reply), then problems.

    What the assertion helpers show when they fail, so a failing test explains itself.
    """
    lines = [f"{result.agent}.{result.action}: {len(result.replies)} replies"
             + (f", {len(result.expected)} nodes addressed" if result.expected is not None
                else " (broadcast)")]
    for name in sorted(result.replies):
        reply = result.replies[name]
        if reply.ok:
            lines.append(f"  {name}: OK {dict(reply.data)!r}")
        else:
            lines.append(f"  {name}: {reply.statuscode.label}: {reply.statusmsg}"
                         + (f" {dict(reply.data)!r}" if reply.data else ""))
    lines.extend(f"  {name}: no reply" for name in result.missing)
    lines.extend(f"  rejected reply: {reason}" for reason in result.rejected)
    if result.error:
        lines.append(f"  transport error: {result.error}")
    if result.cut_short:
        lines.append(f"  incomplete: {result.cut_short}")
    return "\n".join(lines)


def _roster_problems(result: CallResult, expected: Iterable[str] | None) -> list[str]:
    problems = []
    if result.missing:
        problems.append(f"no reply from {', '.join(result.missing)}")
    if result.rejected:
        problems.append(f"{len(result.rejected)} reply(ies) rejected: "
                        + "; ".join(result.rejected))
    if result.error:
        problems.append(f"the call ended with a transport error: {result.error}")
    if result.cut_short:
        problems.append(f"the answer is incomplete: {result.cut_short}")
    if expected is None:
        if not result.replies and not result.missing:
            problems.append("no node answered (did the filter match nothing?)")
        return problems
    wanted = set(_strings(expected))
    absent = sorted(wanted - set(result.replies) - set(result.missing))
    if absent:
        problems.append(f"expected {', '.join(absent)} to answer, but "
                        + ("it was" if len(absent) == 1 else "they were")
                        + " not selected")
    extra = sorted(set(result.replies) - wanted)
    if extra:
        problems.append(f"unexpected replies from {', '.join(extra)}")
    return problems


def assert_all_ok(result: CallResult, expected: Iterable[str] | None = None) -> None:
    """Assert that every addressed node answered OK and nothing went wrong.

    ``expected`` — when given, exactly these identities must have answered (a filter test
    states which nodes it selects). Without it, at least one node must have answered.
    The message names failed nodes with their status and message, silent nodes, rejected
    replies and transport errors, followed by every reply (:func:`describe_result`).
    """
    __tracebackhide__ = True
    problems = _roster_problems(result, expected)
    failed = [f"{name} ({result.replies[name].statuscode.label}: "
              f"{result.replies[name].statusmsg})" for name in result.failed]
    if failed:
        problems.insert(0, f"failed on {', '.join(failed)}")
    if problems:
        raise AssertionError(f"{result.agent}.{result.action} was not OK everywhere: "
                             + "; ".join(problems) + "\n" + describe_result(result))


def assert_all_failed(
    result: CallResult,
    status: Status | int | str | None = None,
    message: str | None = None,
    expected: Iterable[str] | None = None,
) -> None:
    """Assert that every addressed node answered, and every one with a failure.

    ``status`` — the status each reply must have (a :class:`orch.core.protocol.Status`,
    its number, or its label such as ``"aborted"``); ``message`` — text each status message
    must contain; ``expected`` — as for :func:`assert_all_ok`.
    """
    __tracebackhide__ = True
    problems = _roster_problems(result, expected)
    if result.ok:
        problems.insert(0, f"succeeded on {', '.join(result.ok)}")
    wanted = _status(status) if status is not None else None
    for name in result.failed:
        reply = result.replies[name]
        if wanted is not None and reply.statuscode != wanted:
            problems.append(f"{name} answered {reply.statuscode.label}, not {wanted.label}")
        if message is not None and message not in reply.statusmsg:
            problems.append(f"{name}'s message {reply.statusmsg!r} does not contain "
                            f"{message!r}")
    if problems:
        raise AssertionError(f"{result.agent}.{result.action} did not fail as expected: "
                             + "; ".join(problems) + "\n" + describe_result(result))


def _status(value: Status | int | str) -> Status:
    from orch.core.protocol import Status

    if isinstance(value, str):
        for status in Status:
            if value.lower().replace("_", " ") == status.label:
                return status
        raise ValueError(f"unknown status {value!r}; one of "
                         f"{', '.join(s.label for s in Status)}")
    return Status(value)


def data_by_node(result: CallResult, *, ok_only: bool = True) -> dict[str, dict[str, Any]]:
    """``{identity: reply data}`` — of OK replies only, unless ``ok_only`` is false.

    Compare a whole fleet's answers in one assertion:
    ``assert data_by_node(result) == {"web1": {...}, "db1": {...}}``.
    """
    return {name: dict(reply.data) for name, reply in sorted(result.replies.items())
            if reply.ok or not ok_only}


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    For what a test cannot be told about (a process's log line, a file appearing): fails
    with ``AssertionError("timed out after Ns waiting for <what>")`` after ``timeout``
    seconds, so every wait is bounded and says what it was for. Never use it (or a sleep)
    to prove that something did *not* happen: send a follow-up request and wait for its
    reply instead — everything sent before it has then been handled.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


