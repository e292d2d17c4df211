"""Rendering call results for people (text) and programs (``--json``).

The JSON document of a call is stable and documented in ``docs/cli.md``::

    {"agent": ..., "action": ..., "request_id": ...,
     "replies": [{"sender", "status", "statuscode", "statusmsg", "data", "rtt_ms"}],
     "expected": [...] | null, "missing": [...], "rejected": [...], "unexpected": [...],
     "error": null | "...", "cut_short": null | "...", "hint": null | "...",
     "notes": {missing sender: "last seen ..."}, "absent": [...],
     "warnings": {sender: [problem]}, "aggregates": [{"function", "output", "result"}],
     "stats": {"discovered", "responses", "ok", "failed", "missing",
               "discovery_ms", "elapsed_ms"}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from orch.cli.progress import Progress
from orch.core.client import CallResult
from orch.core.protocol import Reply, value_text
from orch.ddl.aggregate import Summary
from orch.ddl.model import ActionDDL

__all__ = [
    "DISPLAY_CHOICES",
    "NAMES_SHOWN",
    "Progress",
    "ReplyPrinter",
    "changed_line",
    "flatten",
    "groups",
    "json_text",
    "print_interrupted",
    "print_json",
    "print_problems",
    "print_reply",
    "print_summaries",
    "print_summary",
    "result_document",
    "should_display",
    "stats_document",
    "summary_line",
]

DISPLAY_CHOICES = ("ok", "failed", "all")


def result_document(
    result: CallResult, summaries: Sequence[Summary] = ()
) -> dict[str, Any]:
    """The ``--json`` form of a call result (with the DDL's aggregate summaries, if any)."""
    return {
        "agent": result.agent,
        "action": result.action,
        "request_id": result.request_id,
        "replies": [
            {
                "sender": name,
                "status": reply.statuscode.label,
                "statuscode": int(reply.statuscode),
                "statusmsg": reply.statusmsg,
                "data": dict(reply.data),
                "rtt_ms": round(result.rtt.get(name, 0.0) * 1000, 3),
            }
            for name, reply in sorted(result.replies.items())
        ],
        "expected": result.expected,
        "missing": result.missing,
        "rejected": result.rejected,
        "unexpected": sorted(result.unexpected),
        "error": result.error,
        "cut_short": result.cut_short,
        "warnings": result.warnings,
        "hint": result.hint,
        # What discovery knew of each silent node (the inventory: when it last registered),
        # as the text output prints beside the name.
        "notes": dict(sorted(result.notes.items())),
        # Nodes that answered the same broadcast (or discovery) before and not this time.
        "absent": result.absent,
        "aggregates": [summary.to_json() for summary in summaries],
        "stats": stats_document(result),
    }


def print_summaries(summaries: Sequence[Summary]) -> None:
    """The DDL's aggregate summaries, after the per-node results.

    A summary with no line (no OK reply carried the output) is left out rather than shown
    as an empty header.
    """
    for summary in summaries:
        if not summary.lines:
            continue
        click.secho(f"Summary of {summary.label}:", bold=True)
        click.echo()
        for line in summary.lines:
            click.echo(f"   {line}")
        click.echo()


def stats_document(result: CallResult) -> dict[str, Any]:
    return {
        "discovered": len(result.expected) if result.expected is not None else None,
        "responses": len(result.replies),
        "ok": len(result.ok),
        "failed": len(result.failed),
        "missing": len(result.missing),
        "discovery_ms": round(result.discovery_seconds * 1000, 3),
        "elapsed_ms": round(result.elapsed * 1000, 3),
    }


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str)


def print_json(document: Any) -> None:
    click.echo(json_text(document))


def print_reply(reply: Reply, ddl: ActionDDL | None, verbose: bool) -> bool:
    """One node's result: its name, then each output under its DDL label.

    Returns whether it ended with a blank line (a bare failure line does not, so that a
    run of them stays compact; the caller separates the last from what follows).
    """
    if not reply.ok:
        message = click.style(f"{reply.statuscode.label}: {reply.statusmsg}", fg="red")
        click.echo(f"{reply.sender:<40} {message}")
        if not verbose and not reply.data:
            return False
    else:
        click.echo(reply.sender)
    outputs = ddl.outputs if ddl is not None else {}
    width = max((len(outputs[k].label) if k in outputs else len(k) for k in reply.data),
                default=0)
    for key, value in reply.data.items():
        label = outputs[key].label if key in outputs else key
        click.echo(f"   {label:>{width}}: {value_text(value)}")
    click.echo()
    return True


def should_display(reply: Reply, display: str | None, ddl: ActionDDL | None) -> bool:
    """Apply ``--display`` or, without it, the DDL's display policy (default: failed)."""
    policy = display or (ddl.display if ddl is not None else "all")
    if policy in ("all", "always"):
        return True
    return reply.ok if policy == "ok" else not reply.ok


def print_summary(result: CallResult, verbose: bool = False) -> None:
    """The closing lines: counts, timing, silent and rejected nodes."""
    expected = len(result.expected) if result.expected is not None else len(result.replies)
    click.echo(
        f"Finished processing {len(result.replies)} / {expected} hosts in "
        f"{result.elapsed * 1000:.2f} ms"
        + (f" (discovery {result.discovery_seconds * 1000:.0f} ms)" if verbose else "")
    )
    if result.failed:
        click.secho(f"\nFailed on {len(result.failed)} node(s):", fg="red", bold=True)
        for name in result.failed:
            reply = result.replies[name]
            click.echo(f"    {name}: {reply.statuscode.label}: {reply.statusmsg}")
    print_problems(result)


def print_problems(result: CallResult) -> None:
    if result.missing:
        click.secho(f"\nNo response from {len(result.missing)} node(s):", fg="red", bold=True)
        for name in result.missing:
            note = result.notes.get(name)
            click.echo(f"    {name}" + (f" ({note})" if note else ""))
    if result.absent:
        print_absent(result.absent)
    if result.rejected:
        click.secho(f"\n{len(result.rejected)} reply(ies) rejected:", fg="red")
        for reason in result.rejected:
            click.echo(f"    {reason}")
    if result.unexpected:
        click.secho(f"\n{len(result.unexpected)} node(s) answered a request not addressed to "
                    "them (not counted):", fg="red")
        for name in sorted(result.unexpected):
            click.echo(f"    {name}")
    if result.warnings:
        click.secho(f"\n{len(result.warnings)} reply(ies) do not match the DDL:", fg="yellow")
        for name, problems in sorted(result.warnings.items()):
            click.echo(f"    {name}: {'; '.join(problems)}")
    if result.error:
        click.secho(f"\nError: {result.error}", fg="red", bold=True)
    if result.cut_short:
        print_cut_short(result.cut_short)
    if result.hint:
        click.secho(f"\nHint: {result.hint}", fg="yellow", err=True)


def print_absent(names: Sequence[str], err: bool = False) -> None:
    """Name the nodes that answered the same broadcast before and stayed silent now
    (on stderr with ``err``, where stdout is a list of names for other programs)."""
    click.secho(f"\n{len(names)} node(s) that answered this before did not answer now "
                "(gone, slow, or no longer selected):", fg="yellow", bold=True, err=err)
    for name in names:
        click.echo(f"    {name}", err=err)


def print_cut_short(reason: str) -> None:
    """Say that the nodes shown are not all there are (on stderr, like other errors)."""
    click.secho(f"\nIncomplete: {reason}", fg="red", bold=True, err=True)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested facts as dotted keys, the way filters address them."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def print_interrupted(result: CallResult) -> None:
    """After Ctrl-C: who answered (their replies were shown as they came), who did not."""
    expected = result.expected
    answered = len(result.replies)
    click.secho(f"\nInterrupted: {answered} of "
                f"{len(expected) if expected is not None else answered} node(s) answered "
                f"in {result.elapsed:.1f}s", fg="red", bold=True, err=True)
    if result.failed:
        click.secho(f"Failed on {len(result.failed)}: {', '.join(result.failed)}",
                    fg="red", err=True)
    if result.missing:
        click.secho(f"Still awaited from {len(result.missing)} node(s):", fg="red", err=True)
        for name in result.missing:
            click.echo(f"    {name}", err=True)


class ReplyPrinter:
    """Prints each reply the moment it arrives, under the display policy (``--display``, else
    the DDL's), clearing the progress line around it; the summary comes at the end."""

    def __init__(self, ddl: ActionDDL | None, display: str | None, verbose: bool,
                 progress: Progress | None = None) -> None:
        self.ddl, self.display, self.verbose = ddl, display, verbose
        self.progress = progress
        self.printed = 0
        #: The last reply printed ended without a blank line: one goes before the summary.
        self.needs_gap = False

    def __call__(self, reply: Reply, _result: CallResult) -> None:
        if not should_display(reply, self.display, self.ddl):
            return
        if self.progress is not None:
            with self.progress.printing():
                self.needs_gap = not print_reply(reply, self.ddl, self.verbose)
        else:
            self.needs_gap = not print_reply(reply, self.ddl, self.verbose)
        self.printed += 1

    def finish(self) -> None:
        """Separate the replies from the summaries that follow."""
        if self.needs_gap:
            click.echo()
            self.needs_gap = False


#: Names listed after a count before the list is cut ("... and 12 more").
NAMES_SHOWN = 10


def groups(result: CallResult, key: str) -> dict[str, list[str]]:
    """``{value: [nodes]}`` of one output over every reply that carries it, failed or not.

    The fleet-wide view a plugin command prints ("running: 48, stopped: 2") is built from
    this and :func:`summary_line`.
    """
    out: dict[str, list[str]] = {}
    for name, reply in sorted(result.replies.items()):
        value = reply.data.get(key)
        if value in (None, ""):
            continue
        out.setdefault(str(value), []).append(name)
    return out


def summary_line(grouped: Mapping[str, list[str]], name_all_but_largest: bool = True,
                 unit: str = "") -> str:
    """``running: 48, stopped: 2 (web-07, web-19)``: largest group first; the others name
    their nodes (up to :data:`NAMES_SHOWN`), since the odd ones out are what an operator
    looks for."""
    ordered = sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    parts = []
    for index, (value, names) in enumerate(ordered):
        text = f"{value}: {len(names)}{unit}"
        if name_all_but_largest and index > 0:
            shown = ", ".join(names[:NAMES_SHOWN])
            more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
            text += f" ({shown}{more})"
        parts.append(text)
    return ", ".join(parts)


def changed_line(result: CallResult) -> str:
    """``changed: 3, unchanged: 47`` from the replies' boolean ``changed`` output."""
    changed = groups(result, "changed")
    return (f"changed: {len(changed.get('True', []))}, unchanged: "
            f"{len(changed.get('False', []))}")
