"""Whether a node's allow/deny lists let a changing action touch one named thing, and why not.

A plugin whose actions change the machine (start a service, remove a package) refuses until
its section's ``allow`` list names the thing or says ``all``; ``deny`` wins over ``allow``.
The rule and the operator-facing reasons (which setting to edit) are the same for every such
plugin, so they live here; the lists themselves are each plugin's own settings, checked with
:func:`orch.core.convert.names_or_all`.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["allow_decision"]


def allow_decision(name: str, allow: Collection[str], deny: Collection[str], *, noun: str,
                   setting: str) -> tuple[bool, str]:
    """``(True, "")`` when ``name`` may be changed, else ``(False, reason)``.

    ``noun`` is what ``name`` is ("service"), ``setting`` the section's dotted path
    ("plugins.service"): the reason names the key to edit.
    """
    if name in deny or "all" in deny:
        return False, f"{noun} {name!r} is denied on this node ({setting}.deny)"
    if name in allow or "all" in allow:
        return True, ""
    if not allow:
        return False, (f"changing {noun}s is not enabled on this node: add {name!r} "
                       f"(or 'all') to {setting}.allow")
    return False, (f"{noun} {name!r} is not in {setting}.allow on this node "
                   f"(allowed: {', '.join(allow)})")
