"""Translating an orch filter into PuppetDB's query language (PQL).

The query selects active nodes' certnames (``nodes[certname] { … }``), with one clause per
filter term, joined as orch joins them (all terms; any one for identities):

| orch term | PQL clause |
|---|---|
| ``-F role=web`` | ``facts { name = "role" and value = "web" }`` |
| ``-F os.family=/deb/`` | ``fact_contents { path = ["os", "family"] and value ~ "deb" }`` |
| ``-F cores>4`` | ``facts { name = "cores" and value > 4 }`` |
| ``-F env!=dev`` | ``!facts { name = "env" and value = "dev" }`` |
| ``-C role::web`` | ``resources { type = "Class" and title = "Role::Web" }`` |
| ``-C /nginx/`` | ``resources { type = "Class" and title ~ "(?i)nginx" }`` |
| ``-I web1`` / ``-I /^web/`` | ``certname = "web1"`` / ``certname ~ "^web"`` |

PuppetDB knows nothing of orch's agents (``-A`` other than ``rpcutil`` is refused) and
compound expressions cannot be translated faithfully (``-S`` is refused): both are a
:class:`~orch.core.filter.FilterSyntaxError` naming the term, never a silently wider query.
Strings are quoted as JSON strings, which PQL's string literals accept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from orch.core.filter import FilterSyntaxError

_NUMERIC_OPERATORS = {"<", ">", "<=", ">="}


def _quote(text: str) -> str:
    return json.dumps(text)


def _slashed(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _literal(value: Any, operator: str) -> str:
    if operator in _NUMERIC_OPERATORS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FilterSyntaxError(f"{operator} needs a number, got {value!r}") from None
        return str(int(number)) if number.is_integer() else repr(number)
    return _quote(str(value))


def fact_clause(term: Mapping[str, Any]) -> str:
    fact, operator, value = term.get("fact"), term.get("operator"), term.get("value")
    if not isinstance(fact, str) or not fact or not isinstance(operator, str):
        raise FilterSyntaxError(f"malformed fact term {term!r}")
    pql_operator = {"==": "=", "!=": "=", "=~": "~"}.get(operator, operator)
    comparison = f"value {pql_operator} {_literal(value, operator)}"
    if "." in fact:
        path = ", ".join(_quote(part) for part in fact.split("."))
        clause = f"fact_contents {{ path = [{path}] and {comparison} }}"
    else:
        clause = f"facts {{ name = {_quote(fact)} and {comparison} }}"
    return f"!{clause}" if operator == "!=" else clause


def class_clause(term: str) -> str:
    if _slashed(term):
        return f'resources {{ type = "Class" and title ~ {_quote("(?i)" + term[1:-1])} }}'
    title = "::".join(part[:1].upper() + part[1:] for part in term.split("::"))
    return f'resources {{ type = "Class" and title = {_quote(title)} }}'


def identity_clause(term: str) -> str:
    if _slashed(term):
        return f"certname ~ {_quote(term[1:-1])}"
    return f"certname = {_quote(term)}"


def to_pql(filter: Mapping[str, Sequence[Any]], agent: str) -> str:
    """The PQL query for the nodes ``filter`` selects (FilterSyntaxError if it cannot)."""
    clauses = ["deactivated is null", "expired is null"]
    agents = [*filter.get("agent", ()), *([agent] if agent != "rpcutil" else [])]
    unsupported = sorted(set(filter) - {"fact", "class", "identity", "agent"})
    if unsupported:
        raise FilterSyntaxError(f"puppetdb discovery cannot translate {', '.join(unsupported)} "
                                "filters; use -F, -C and -I, or another discovery method")
    if any(name != "rpcutil" for name in agents):
        raise FilterSyntaxError("puppetdb discovery cannot tell which nodes host agent(s) "
                                f"{', '.join(sorted(set(agents) - {'rpcutil'}))}; use "
                                "another discovery method")
    clauses += [fact_clause(term) for term in filter.get("fact", ())]
    clauses += [class_clause(str(term)) for term in filter.get("class", ())]
    identities = [identity_clause(str(term)) for term in filter.get("identity", ())]
    if identities:
        clauses.append("(" + " or ".join(identities) + ")")
    return f"nodes[certname] {{ {' and '.join(clauses)} }}"
