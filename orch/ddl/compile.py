"""From DDL to JSON Schema: what ``jsonschema`` checks on the client, the server and replies.

Each action's inputs compile to one object schema (``required`` for non-optional inputs,
``additionalProperties: false`` so unknown arguments are refused); a named validator
(``shellsafe``, ``ipv4address`` … or one a plugin adds through ``orch_validators``) becomes
a JSON Schema ``format`` checked by a :class:`jsonschema.FormatChecker` holding exactly the
installed validators; a regex ``validation`` becomes ``pattern``. Compiled validators are
cached per action and validator set, so a request costs one ``iter_errors`` call.

The ``pattern`` keyword is evaluated by :mod:`orch.core.patterns` (RE2), not by
jsonschema's default :func:`re.search`: the argument values come from the network and are
checked before authorization, so a DDL pattern such as ``^(a+)+$`` must not let any caller
stall a node with ``"aaaa…!"``. RE2's ``$`` already means the end of the text, as JSON
Schema and Choria intend (Python's also matches before a final newline).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orch.core.errors import ArgumentError
from orch.core.patterns import PatternError
from orch.core.patterns import search as pattern_search
from orch.ddl import conform
from orch.ddl.model import ActionDDL, InputDDL, OutputDDL, Validators

#: JSON Schema for each DDL value type (list = enumeration, handled per input).
TYPE_SCHEMAS: Mapping[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "float": {"type": "number"},
    "boolean": {"type": "boolean"},
    "hash": {"type": "object"},
    "array": {"type": "array"},
    "list": {"type": "string"},
    "any": {},
}


def input_schema(action: ActionDDL) -> dict[str, Any]:
    """The JSON Schema of ``action``'s arguments."""
    return {
        "type": "object",
        "properties": {name: _input_property(spec) for name, spec in action.inputs.items()},
        "required": [name for name, spec in action.inputs.items() if not spec.optional],
        "additionalProperties": False,
    }


def output_schema(action: ActionDDL) -> dict[str, Any]:
    """The JSON Schema of ``action``'s reply data (undeclared outputs are refused)."""
    return {
        "type": "object",
        "properties": {name: _output_property(spec) for name, spec in action.outputs.items()},
        "additionalProperties": not action.outputs,
    }


def _input_property(spec: InputDDL) -> dict[str, Any]:
    schema = dict(TYPE_SCHEMAS.get(spec.type, {}))
    if spec.type == "list":
        schema["enum"] = list(spec.values)
    if spec.type == "string":
        if spec.maxlength:
            schema["maxLength"] = spec.maxlength
        if spec.named_validator:
            schema["format"] = spec.named_validator
        elif spec.validation:
            schema["pattern"] = spec.validation
    return schema


@functools.cache
def validator_class() -> Any:
    """Draft 2020-12 with ``pattern`` evaluated in linear time (see the module docstring)."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _bounded_pattern})


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """The ``pattern`` keyword: jsonschema's semantics, the bounded engine's matching."""
    from jsonschema import ValidationError

    if not validator.is_type(instance, "string"):
        return
    try:
        found = pattern_search(pattern, instance)
    except PatternError as exc:
        yield ValidationError(f"pattern {pattern!r} cannot be evaluated: {exc}")
        return
    if not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _output_property(spec: OutputDDL) -> dict[str, Any]:
    schema = dict(TYPE_SCHEMAS.get(spec.type, {}))
    if spec.default is None and schema:
        # Choria DDLs commonly declare a typed output whose default is null.
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


#: Compiled validators, keyed by the identities of the action and the validators, least
#: recently used first. Bounded, so the DDLs replaced by a SIGHUP rescan (and the
#: validators of registries gone) are dropped once newer ones have been used; each entry
#: holds its action and validators, so an id is never reused while its entry exists.
_cache: OrderedDict[tuple[int, int, str], Any] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 2048


def _remember(key: tuple[int, int, str], entry: tuple[Any, ActionDDL, Validators]) -> None:
    with _cache_lock:
        _cache[key] = entry
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)

#: Keywords :class:`DirectChecker` checks exactly as jsonschema would, per property.
_DIRECT_KEYWORDS = frozenset({"type", "enum", "maxLength", "pattern"})


def _json_type(value: Any, name: str) -> bool:
    """JSON Schema's (draft 2020-12) ``type`` test, as jsonschema's default type checker."""
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "null":
        return value is None
    raise ValueError(f"unknown JSON type {name!r}")


@dataclass(frozen=True)
class SchemaError:
    """What :func:`_explain` and :func:`check_reply` read of a jsonschema error."""

    validator: str
    absolute_path: tuple[Any, ...] = ()
    message: str = ""


class DirectChecker:
    """Checks a compiled schema whose properties say only ``type``, ``enum``, ``maxLength``
    and ``pattern``: every reply schema, and every action without named validators.

    A request or a reply then costs a few ``isinstance`` calls (and a cached regex), and a
    command or daemon that meets no named validator never imports jsonschema. The errors are
    those of :func:`validator_class`, in its order, with the same keyword semantics
    (``pattern`` is the bounded engine's search, lengths count code points, both only for
    strings); the unit tests compare the two on generated data. Named validators
    (``format``) still go to jsonschema.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.properties: Mapping[str, Mapping[str, Any]] = schema["properties"]
        self.required: list[str] = schema.get("required", [])
        self.closed = schema["additionalProperties"] is False

    @staticmethod
    def applies(schema: Mapping[str, Any]) -> bool:
        for prop in schema["properties"].values():
            if "anyOf" in prop:
                options = prop["anyOf"]
                if len(options) != 2 or set(options[0]) != {"type"} or options[1] != {
                        "type": "null"}:
                    return False
            elif set(prop) - _DIRECT_KEYWORDS:
                return False
        return True

    def iter_errors(self, data: Mapping[str, Any]) -> Iterator[SchemaError]:
        for name, prop in self.properties.items():
            if name in data:
                yield from self._property(name, prop, data[name])
        for name in self.required:
            if name not in data:
                yield SchemaError("required", (), f"{name!r} is a required property")
        if self.closed:
            extra = [name for name in data if name not in self.properties]
            if extra:
                yield SchemaError("additionalProperties", (),
                                  f"Additional properties are not allowed ({extra!r})")

    @staticmethod
    def _property(name: str, prop: Mapping[str, Any], value: Any) -> Iterator[SchemaError]:
        path = (name,)
        for keyword, expected in prop.items():
            if keyword == "anyOf":
                if not any(_json_type(value, option["type"]) for option in expected):
                    yield SchemaError("anyOf", path, f"{value!r} is not valid under any of "
                                      "the given schemas")
            elif keyword == "type":
                if not _json_type(value, expected):
                    yield SchemaError("type", path, f"{value!r} is not of type {expected!r}")
            elif keyword == "enum":
                if not any(_same_json(value, item) for item in expected):
                    yield SchemaError("enum", path, f"{value!r} is not one of {expected!r}")
            elif isinstance(value, str):
                if keyword == "maxLength" and len(value) > expected:
                    yield SchemaError("maxLength", path, f"{value!r} is too long")
                elif keyword == "pattern":
                    try:
                        found = pattern_search(expected, value)
                    except PatternError as exc:
                        yield SchemaError("pattern", path, f"pattern {expected!r} cannot be "
                                          f"evaluated: {exc}")
                        continue
                    if not found:
                        yield SchemaError("pattern", path,
                                          f"{value!r} does not match {expected!r}")


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema's ``enum`` sees it (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _validator(action: ActionDDL, validators: Validators, which: str) -> Any:
    """A compiled validator for ``action`` (cached on the action and validators):
    :class:`DirectChecker` when that suffices, else jsonschema's."""
    key = (id(action), id(validators), which)
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is not None:
            _cache.move_to_end(key)
    if compiled is None:
        schema = input_schema(action) if which == "input" else output_schema(action)
        if DirectChecker.applies(schema):
            compiled = DirectChecker(schema)
            _remember(key, (compiled, action, validators))
            return compiled
        from jsonschema import FormatChecker

        checker = FormatChecker(formats=())
        for name, predicate in validators.items():
            checker.checks(name)(predicate)
        compiled = validator_class()(schema, format_checker=checker)
        _remember(key, (compiled, action, validators))  # keeps both alive while cached
        return compiled
    return compiled[0]


def check_arguments(
    action: ActionDDL, data: Mapping[str, Any], validators: Validators | None = None
) -> dict[str, Any]:
    """Apply defaults and validate; raise ArgumentError (``kind`` missing/invalid).

    ``validators`` are the named validators the plugins offer (``registry.validators()``);
    the DDL compiler knows no plugin, so with None an argument naming one is invalid.
    """
    if not action.inputs and not data:  # nothing to check (ping): skip jsonschema
        return {}
    validators = _NO_VALIDATORS if validators is None else validators
    checked = dict(data)
    for name, spec in action.inputs.items():
        if name not in checked and spec.default is not None:
            checked[name] = spec.default
    unknown_formats = {spec.named_validator for spec in action.inputs.values()
                       if spec.named_validator and spec.named_validator not in validators}
    for name, spec in action.inputs.items():
        if spec.named_validator in unknown_formats and name in checked:
            raise _error("invalid", f"argument {name!r} uses validator "
                         f"{spec.named_validator!r}, which is not installed here")
    # Defaults are the DDL author's, not the caller's: like Choria, never refuse a call
    # because a default fails its own input's validation (the DDL load warned about it).
    defaulted = {name for name in checked if name not in data}
    errors = [error for error in _validator(action, validators, "input").iter_errors(checked)
              if not (error.absolute_path and str(error.absolute_path[0]) in defaulted)]
    if errors:
        raise _explain(action, checked, errors)
    for name, spec in action.inputs.items():
        # JSON Schema counts 3.0 as an integer; hand the action the int it declared.
        if spec.type == "integer" and isinstance(checked.get(name), float):
            checked[name] = int(checked[name])
    return checked


#: Replies need no validators; one shared mapping keeps the compiled-schema cache bounded.
_NO_VALIDATORS: Validators = {}


def check_reply(action: ActionDDL, data: Mapping[str, Any]) -> list[str]:
    """Human-readable problems of ``data`` against ``action``'s outputs."""
    if not action.outputs or conform.plainly_conforms(action, data):
        return []
    problems = []
    for error in _validator(action, _NO_VALIDATORS, "output").iter_errors(dict(data)):
        if error.validator == "additionalProperties":
            extra = sorted(set(data) - set(action.outputs))
            problems.append(f"undeclared output(s) {', '.join(extra)}")
            continue
        name = str(error.absolute_path[0]) if error.absolute_path else "?"
        declared = action.outputs[name].type if name in action.outputs else "?"
        if error.validator in ("anyOf", "type"):
            problems.append(f"output {name!r} must be of type {declared}, "
                            f"got {data.get(name)!r}")
        else:
            problems.append(f"output {name!r}: {error.message}")
    return problems


def input_problem(spec: InputDDL, value: Any, validators: Validators | None) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (None if it is) — for DDL defaults."""
    schema = _input_property(spec)
    schema.pop("format", None)
    error = next(iter(validator_class()(schema).iter_errors(value)), None)
    return None if error is None else f"is not valid: {error.message}"


def _explain(action: ActionDDL, data: Mapping[str, Any], errors: list[Any]) -> ArgumentError:
    """Turn the first jsonschema error into a message naming the argument."""
    order = {"required": 0, "additionalProperties": 1}
    error = min(errors, key=lambda e: order.get(e.validator, 2))
    if error.validator == "required":
        missing = [n for n, s in action.inputs.items() if not s.optional and n not in data]
        return _error("missing", f"argument {missing[0]!r} is required")
    if error.validator == "additionalProperties":
        unknown = sorted(set(data) - set(action.inputs))
        return _error("invalid", f"unknown argument(s) {', '.join(unknown)} for "
                      f"{action.name}; it takes {', '.join(action.inputs) or 'none'}")
    name = str(error.absolute_path[0])
    spec = action.inputs[name]
    value = data[name]
    # An operator reads what the input is, as its DDL describes it, not the regex behind it;
    # only an input described by nothing gets its pattern quoted.
    described = ": ".join(text.rstrip(".") for text in (spec.prompt, spec.description) if text)
    reasons = {
        "type": f"must be of type {spec.type}, got {value!r}",
        "maxLength": f"is longer than {spec.maxlength} characters",
        "pattern": (f"has an invalid value {value!r} ({described}; see the action's --help)"
                    if described else f"does not match {spec.validation}"),
        "format": f"is not a valid {spec.validation} value",
        "enum": f"must be one of {', '.join(spec.values)}",
    }
    return _error("invalid", f"argument {name!r} {reasons.get(error.validator, error.message)}")


def _error(kind: str, message: str) -> ArgumentError:
    return ArgumentError(message, kind)
