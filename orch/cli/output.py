"""Rendering call results for people (text) and programs (``--json``).

The JSON document of a call is stable and documented in ``docs/cli.md``::

    {"agent": ..., "action": ..., "request_id": ...,
     "replies": [{"sender", "status", "statuscode", "statusmsg", "data", "rtt_ms"}],
     "expected": [...] | null, "missing": [...], "rejected": [...], "error": null | "...",
     "cut_short": null | "...",
     "warnings": {sender: [problem]}, "aggregates": [{"function", "output", "result"}],
     "stats": {"discovered", "responses", "ok", "failed", "missing",
               "discovery_ms", "elapsed_ms"}}
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import click

from orch.core.client import CallResult
from orch.core.protocol import Reply, value_text
from orch.ddl.aggregate import Summary
from orch.ddl.model import ActionDDL

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
        "error": result.error,
        "cut_short": result.cut_short,
        "warnings": result.warnings,
        "aggregates": [summary.to_json() for summary in summaries],
        "stats": stats_document(result),
    }


def print_summaries(summaries: Sequence[Summary]) -> None:
    """The DDL's aggregate summaries, after the per-node results."""
    for summary in summaries:
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


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False, default=str))


def print_reply(reply: Reply, ddl: ActionDDL | None, verbose: bool) -> None:
    """One node's result: its name, then each output under its DDL label."""
    if not reply.ok:
        message = click.style(f"{reply.statuscode.label}: {reply.statusmsg}", fg="red")
        click.echo(f"{reply.sender:<40} {message}")
        if not verbose and not reply.data:
            return
    else:
        click.echo(reply.sender)
    outputs = ddl.outputs if ddl is not None else {}
    width = max((len(outputs[k].label) if k in outputs else len(k) for k in reply.data),
                default=0)
    for key, value in reply.data.items():
        label = outputs[key].label if key in outputs else key
        click.echo(f"   {label:>{width}}: {value_text(value)}")
    click.echo()


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
        click.secho(f"Failed on {len(result.failed)}: {', '.join(result.failed)}", fg="red")
    print_problems(result)


def print_problems(result: CallResult) -> None:
    if result.missing:
        click.secho(f"\nNo response from {len(result.missing)} node(s):", fg="red", bold=True)
        for name in result.missing:
            note = result.notes.get(name)
            click.echo(f"    {name}" + (f" ({note})" if note else ""))
    if result.rejected:
        click.secho(f"\n{len(result.rejected)} reply(ies) rejected:", fg="red")
        for reason in result.rejected:
            click.echo(f"    {reason}")
    if result.warnings:
        click.secho(f"\n{len(result.warnings)} reply(ies) do not match the DDL:", fg="yellow")
        for name, problems in sorted(result.warnings.items()):
            click.echo(f"    {name}: {'; '.join(problems)}")
    if result.error:
        click.secho(f"\nError: {result.error}", fg="red", bold=True)
    if result.cut_short:
        print_cut_short(result.cut_short)


def print_cut_short(reason: str) -> None:
    """Say that the nodes shown are not all there are (on stderr, like other errors)."""
    click.secho(f"\nIncomplete: {reason}", fg="red", bold=True, err=True)


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a terminal."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total: int | None = None
        self.count = 0

    def expect(self, nodes: list[str]) -> None:
        self.total = len(nodes)
        self._draw()

    def advance(self, *_: Any) -> None:
        self.count += 1
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        if self.total:
            filled = int(30 * self.count / self.total)
            bar = "#" * filled + " " * (30 - filled)
            text = f"\r [{bar}] {self.count} / {self.total}"
        else:
            text = f"\r {self.count} replies"
        self.stream.write(text)
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


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
