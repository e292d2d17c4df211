"""Loading a JSON DDL into typed objects, checked against orch's meta-schema.

The layout is Choria's (``https://choria.io/schemas/mcorpc/ddl/v1/agent.json``), so DDLs
written for Choria load unchanged::

    {"metadata": {"name": "rpcutil", "timeout": 10, ...},
     "actions": [{"action": "get_fact", "description": "...", "display": "always",
                  "input": {"fact": {"type": "string", "optional": false, ...}},
                  "output": {"value": {"description": "...", "display_as": "Value"}},
                  "aggregate": [{"function": "summary", "args": ["value"]}]}]}

Every DDL is validated against ``schema/agent.json`` when loaded, then checked for what a
schema cannot say (duplicate actions, regexes that do not compile, defaults of the wrong
type, aggregates over undeclared outputs). Validation regexes are compiled by the bounded
engine of :mod:`orch.core.patterns` (RE2) that will apply them to request arguments, so a
DDL using syntax it lacks (lookaround, backreferences) fails to load. Errors name the file
and the field. How inputs and outputs become JSON Schemas is in :mod:`orch.ddl.compile`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.core.errors import OrchError
from orch.core.patterns import PatternError, compile_pattern
from orch.ddl import conform

DEFAULT_TIMEOUT = 10.0
#: Type spellings found in the wild, mapped to orch's canonical names.
TYPE_ALIASES = {"int": "integer", "Hash": "hash", "Array": "array", "": "any"}
#: A validation that looks like a word names a validator plugin; anything else is a regex.
NAMED_VALIDATOR = re.compile(r"^[a-z][a-z0-9_]*$")

#: ``validators`` arguments map a validator name to a predicate over the value.
Validators = Mapping[str, Callable[[Any], bool]]

log = logging.getLogger(__name__)


class DDLError(OrchError):
    """A DDL file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class InputDDL:
    name: str
    type: str = "string"
    description: str = ""
    prompt: str = ""
    optional: bool = True
    default: Any = None
    validation: str | None = None
    maxlength: int | None = None
    #: The allowed values of a ``list`` (enumeration) input.
    values: tuple[str, ...] = ()

    @property
    def named_validator(self) -> str | None:
        """The validator plugin's name, when ``validation`` names one rather than a regex."""
        if self.validation and NAMED_VALIDATOR.match(self.validation):
            return self.validation
        return None


@dataclass(frozen=True)
class OutputDDL:
    name: str
    description: str = ""
    display_as: str = ""
    type: str = "any"
    default: Any = None

    @property
    def label(self) -> str:
        return self.display_as or self.name


@dataclass(frozen=True)
class AggregateDDL:
    """One summary over an output: ``function`` applied to ``output`` with extra ``args``."""

    function: str
    output: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, eq=False)
class ActionDDL:
    name: str
    description: str = ""
    display: str = "failed"
    inputs: Mapping[str, InputDDL] = field(default_factory=dict)
    outputs: Mapping[str, OutputDDL] = field(default_factory=dict)
    aggregate: tuple[AggregateDDL, ...] = ()

    def check_arguments(
        self, data: Mapping[str, Any], validators: Validators | None = None
    ) -> dict[str, Any]:
        """Return ``data`` with defaults applied, or raise ArgumentError naming the argument.

        The error's ``kind`` is ``missing`` or ``invalid`` so the server can pick the reply
        status. ``validators`` are the named validators available
        (``registry.validators()``; with None, an argument naming one is invalid).
        """
        if not self.inputs and not data:  # nothing to check (ping): no compiler needed
            return {}
        from orch.ddl.compile import check_arguments

        return check_arguments(self, data, validators)

    def check_reply(self, data: Mapping[str, Any]) -> list[str]:
        """Problems of a reply's data against the declared outputs (empty when it conforms)."""
        if not self.outputs or conform.plainly_conforms(self, data):
            return []
        from orch.ddl.compile import check_reply

        return check_reply(self, data)


@dataclass(frozen=True)
class AgentDDL:
    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    url: str = ""
    timeout: float = DEFAULT_TIMEOUT
    actions: Mapping[str, ActionDDL] = field(default_factory=dict)
    source: str = ""

    def action(self, name: str) -> ActionDDL | None:
        return self.actions.get(name)


@functools.cache
def meta_schema() -> dict[str, Any]:
    """orch's JSON Schema for DDL files (shipped as ``orch/ddl/schema/agent.json``).

    Read from beside this module when orch is installed as files (always, with pip), through
    ``importlib.resources`` only otherwise (a zip): the daemon digests the meta-schema on its
    first request, and ``importlib.resources`` with its readers (``zipfile``…) is about 1 MB
    of an idle daemon's memory (issue 13)."""
    beside = Path(__file__).with_name("schema") / "agent.json"
    if beside.is_file():
        text = beside.read_text(encoding="utf-8")
    else:
        from importlib import resources

        text = resources.files("orch.ddl").joinpath("schema/agent.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_ddl(source: str | Path, text: str | None = None) -> AgentDDL:
    """Load a DDL from ``source`` (a path), or from ``text`` naming ``source`` in errors.

    A text that passed every check before (same bytes, same meta-schema) is not checked
    again: the digests of checked DDLs are kept in the user's cache (:mod:`orch.core.cache`),
    so a command does not import jsonschema only to re-validate an unchanged file.
    """
    try:
        if text is None:
            text = Path(source).read_text()
        raw = json.loads(text)
    except OSError as exc:
        raise DDLError(f"{source}: cannot read DDL: {exc.strerror}") from None
    except ValueError as exc:
        raise DDLError(f"{source}: not valid JSON: {exc}") from None
    digest = _digest(text)
    if digest in _checked_digests():
        return _build(raw, str(source), check=False)
    ddl = parse_ddl(raw, str(source))
    _remember_checked(digest)
    return ddl


#: How many checked DDL digests the cache keeps (the most recent ones).
CHECKED_CACHE_SIZE = 512
_CHECKED_FILE = "ddl-checked.json"


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _meta_digest() -> str:
    return _digest(json.dumps(meta_schema(), sort_keys=True))


@functools.cache
def _checked_digests() -> set[str]:
    from orch.core import cache

    data = cache.read_json(_CHECKED_FILE)
    if not isinstance(data, dict) or data.get("meta") != _meta_digest():
        return set()
    digests = data.get("digests")
    return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else set()


def _remember_checked(digest: str) -> None:
    from orch.core import cache

    known = _checked_digests()
    if digest in known:
        return
    known.add(digest)
    data = cache.read_json(_CHECKED_FILE)
    stored = (data.get("digests") if isinstance(data, dict)
              and data.get("meta") == _meta_digest() else None)
    digests = [d for d in stored if isinstance(d, str) and d != digest] if isinstance(
        stored, list) else []
    digests = [*digests, digest][-CHECKED_CACHE_SIZE:]
    cache.write_json(_CHECKED_FILE, {"meta": _meta_digest(), "digests": digests})


def parse_ddl(raw: Any, source: str) -> AgentDDL:
    """Validate ``raw`` against the meta-schema, then build the typed DDL."""
    return _build(raw, source, check=True)


def _build(raw: Any, source: str, check: bool) -> AgentDDL:
    """The typed DDL; ``check=False`` only for a text that passed every check before."""
    if check:
        _check_schema(raw, source)
    meta = raw["metadata"]
    actions: dict[str, ActionDDL] = {}
    for index, spec in enumerate(raw["actions"]):
        where = f"{source}: actions[{index}]"
        if spec["action"] in actions:
            raise DDLError(f"{where}.action: action {spec['action']!r} is defined twice")
        actions[spec["action"]] = _action(spec, where, check)
    return AgentDDL(
        name=meta["name"], description=meta["description"], version=meta["version"],
        author=meta["author"], license=meta["license"], url=meta.get("url", ""),
        timeout=float(meta["timeout"]), actions=actions, source=source,
    )


def _check_schema(raw: Any, source: str) -> None:
    validator = _meta_validator()
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        error = errors[0]
        where = _json_path(error.absolute_path)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise DDLError(f"{source}: {where or 'top level'}: {error.message}{more}")


@functools.cache
def _meta_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(meta_schema())


def _json_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _action(spec: Mapping[str, Any], where: str, check: bool = True) -> ActionDDL:
    inputs = {name: _input(name, item, f"{where}.input.{name}", check)
              for name, item in spec.get("input", {}).items()}
    outputs = {
        name: OutputDDL(
            name, description=item.get("description", ""),
            display_as=item.get("display_as", ""),
            type=TYPE_ALIASES.get(item.get("type", "any"), item.get("type", "any")),
            default=item.get("default"),
        )
        for name, item in spec.get("output", {}).items()
    }
    aggregates = []
    for index, item in enumerate(spec.get("aggregate", [])):
        output, *args = item["args"]
        if outputs and output not in outputs:
            raise DDLError(f"{where}.aggregate[{index}].args[0]: output {output!r} is not "
                           f"declared; outputs: {', '.join(outputs)}")
        aggregates.append(AggregateDDL(item["function"], output, tuple(args)))
    action = ActionDDL(
        name=spec["action"], description=spec["description"],
        display=spec.get("display", "failed"), inputs=inputs, outputs=outputs,
        aggregate=tuple(aggregates),
    )
    for name, item in inputs.items():
        if check and item.default is not None:
            from orch.ddl.compile import input_problem

            problem = input_problem(item, item.default, None)
            if problem:  # Choria never checks defaults: every DDL it loads, orch loads
                log.warning("%s.input.%s.default: %r %s; the default is sent as it is when "
                            "the input is not given", where, name, item.default, problem)
    return action


def _input(name: str, item: Mapping[str, Any], where: str, check: bool = True) -> InputDDL:
    kind = TYPE_ALIASES.get(item["type"], item["type"])
    validation = item.get("validation") or None
    if kind == "list" and not item.get("list"):
        raise DDLError(f"{where}.list: a list input needs the list of allowed values")
    # A text checked before had its patterns compiled then: an idle daemon need not load
    # the RE2 engine (about 2.5 MB) until an argument is actually matched.
    if check and validation and not NAMED_VALIDATOR.match(validation):
        try:
            compile_pattern(validation)
        except PatternError as exc:
            raise DDLError(f"{where}.validation: {validation!r} is not a valid regular "
                           f"expression ({exc})") from None
    return InputDDL(
        name, type=kind, description=item.get("description", ""),
        prompt=item.get("prompt", ""), optional=item.get("optional", False),
        default=item.get("default"), validation=validation,
        maxlength=item.get("maxlength") or None, values=tuple(item.get("list", ())),
    )
