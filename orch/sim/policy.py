"""The simulated nodes' action policy, written on purpose rather than left out.

A server started without ``policy_dir`` allows every authenticated caller every action and
warns about it at start, naming its identity. A simulation's nodes share their services'
settings, whose identity is the machine the simulation runs on, so that warning named this
machine as if it were a node — as the first line of ``orch demo`` and of ``orch sim``. The
simulation's own client is the only caller its CA knows, and allowing it everything is
what the simulation means: :func:`with_explicit_policy` says so in a policy file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: What simulated nodes run with unless their settings name a ``policy_dir``.
SIM_POLICY = """\
# orch sim / orch demo: the simulated nodes' action policy (docs/actionpolicy.md explains
# the rules). The simulation's own client may run every action on every node: on a real
# fleet, allow named callers and leave the default at deny.
policy default allow
"""


def with_explicit_policy(settings: Mapping[str, Any], state_dir: Path) -> dict[str, Any]:
    """``settings`` with :data:`SIM_POLICY` as their action policy, unless they name one.

    The policy is written to ``state_dir/policies/default.policy``. Settings that set their
    own ``policy_dir`` (in ``plugins.actionpolicy``, or the top-level alias) are kept as
    they are.
    """
    values = dict(settings)
    plugins = values.get("plugins")
    section = plugins.get("actionpolicy") if isinstance(plugins, Mapping) else None
    if "policy_dir" in values or (isinstance(section, Mapping) and "policy_dir" in section):
        return values
    directory = state_dir / "policies"
    directory.mkdir(parents=True, exist_ok=True)
    policy = directory / "default.policy"
    # Unchanged, the file keeps its time: a server re-reads a policy file changed in the
    # last 2 s on every request, and a simulation asks for its settings more than once.
    if not policy.is_file() or policy.read_text(encoding="utf-8") != SIM_POLICY:
        policy.write_text(SIM_POLICY, encoding="utf-8")
    values["plugins"] = {**(plugins if isinstance(plugins, Mapping) else {}),
                         "actionpolicy": {**(section or {}), "policy_dir": str(directory)}}
    return values
