"""The cheap check of a reply against its action's declared outputs.

Replies are checked on every node for every request and by the client for every reply;
almost all conform, and a type check per value costs a fraction of a jsonschema run (and
of importing :mod:`orch.ddl.compile`, which a command whose replies conform never needs).
Anything this does not clearly accept goes to :func:`orch.ddl.compile.check_reply`, which
gives jsonschema's verdict and words the problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.ddl.model import ActionDDL

#: Python types of the DDL output types that need nothing but a type check.
PLAIN_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "string": str, "list": str, "number": (int, float), "float": (int, float),
    "boolean": bool, "hash": dict, "array": list, "any": object,
}


def plainly_conforms(action: ActionDDL, data: Mapping[str, Any]) -> bool:
    """True when ``data`` certainly matches ``action``'s outputs, without jsonschema.

    False means "ask jsonschema", not "does not conform": an integer given as a float or an
    unknown type is left to it.
    """
    outputs = action.outputs
    for name, value in data.items():
        spec = outputs.get(name)
        if spec is None:
            return False
        if value is None:
            if spec.default is None or spec.type == "any":
                continue
            return False
        if spec.type == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                return False
            continue
        wanted = PLAIN_TYPES.get(spec.type)
        if wanted is None or not isinstance(value, wanted):
            return False
        if wanted is not bool and wanted is not object and isinstance(value, bool):
            return False  # JSON Schema: true is not a number
    return True
