"""Help text generated from a DDL, the same words for ``--help``, docs and the API."""

from __future__ import annotations

from orch.ddl.model import ActionDDL, AgentDDL


def agent_help(ddl: AgentDDL) -> str:
    """An agent's description and the list of its actions."""
    lines = [f"{ddl.name}: {ddl.description}".rstrip(": "), ""]
    meta = [("Author", ddl.author), ("Version", ddl.version), ("License", ddl.license),
            ("Timeout", f"{ddl.timeout:g}s")]
    lines += [f"  {key:<8} {value}" for key, value in meta if value]
    lines += ["", "Actions:"]
    width = max((len(name) for name in ddl.actions), default=0)
    lines += [f"  {name:<{width}}  {action.description}"
              for name, action in sorted(ddl.actions.items())]
    lines += ["", f"Help for one action: orch rpc {ddl.name} ACTION --help"]
    return "\n".join(lines)


def action_help(agent: AgentDDL, action: ActionDDL) -> str:
    """Usage, inputs (type, default, validation) and outputs of one action."""
    usage = " ".join(
        f"{name}=VALUE" if not spec.optional else f"[{name}=VALUE]"
        for name, spec in action.inputs.items()
    )
    lines = [
        " ".join(filter(None, ["Usage: orch rpc", agent.name, action.name, usage,
                               "[FILTERS] [OPTIONS]"])),
        "",
        f"  {action.description}",
        "",
        "Inputs:" if action.inputs else "Inputs: none",
    ]
    for name, spec in action.inputs.items():
        facts = [spec.type, "required" if not spec.optional else "optional"]
        if spec.values:
            facts.append(f"one of {', '.join(spec.values)}")
        if spec.default is not None:
            facts.append(f"default {spec.default!r}")
        if spec.validation:
            facts.append(f"validation {spec.validation}")
        if spec.maxlength:
            facts.append(f"max length {spec.maxlength}")
        lines.append(f"  {name} ({', '.join(facts)})")
        if spec.description or spec.prompt:
            lines.append(f"      {spec.description or spec.prompt}")
    lines += ["", "Outputs:" if action.outputs else "Outputs: none"]
    for name, out in action.outputs.items():
        label = f" [{out.display_as}]" if out.display_as else ""
        lines.append(f"  {name}{label} ({out.type}): {out.description}")
    if action.aggregate:
        lines += ["", "Summaries:"]
        for aggregate in action.aggregate:
            args = ", ".join([aggregate.output, *(str(a) for a in aggregate.args)])
            lines.append(f"  {aggregate.function}({args})")
    lines += ["", f"Timeout: {agent.timeout:g}s   Display: {action.display}",
              "Filters and options: see `orch rpc --help`."]
    return "\n".join(lines)
