"""Finding external agents in the agents directories and activation-checking them."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.agents.external.agent import ExternalAgent
from orch.agents.external.call import _call
from orch.agents.external.reply import _log_output, _process_failure, _tail
from orch.agents.external.settings import (
    _NOT_AGENTS,
    PROTOCOL_ACTIVATION,
    RESERVED_NAMES,
    SCHEMA_ACTIVATION,
    Limits,
)
from orch.core.agent import Agent
from orch.core.config import Settings
from orch.core.protocol import valid_name
from orch.ddl.model import AgentDDL, DDLError, load_ddl

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")




@dataclass(frozen=True)
class Refusal:
    """A file in an agents directory that is not served, and why."""

    path: str
    reason: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class _Candidate:
    name: str
    ddl: AgentDDL
    ddl_path: Path
    executable: Path


def _go_platform() -> str:
    """``<goos>_<goarch>`` of this machine, as Choria names multi-arch agent binaries."""
    goos = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}.get(
        sys.platform, sys.platform.rstrip("0123456789"))
    machine = platform.machine().lower()
    goarch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
              "i386": "386", "i686": "386", "x86": "386", "armv7l": "arm", "armv6l": "arm",
              "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return f"{goos}_{goarch}"


def _executable_for(base: Path, name: str) -> Path | None:
    """Where the executable of agent ``name`` whose DDL is in ``base`` lives (or None).

    Choria's rule: ``base/name`` when it is a file, else the per-platform binary
    ``base/name/name-<goos>_<goarch>``.
    """
    direct = base / name
    if direct.is_file():
        return direct
    if direct.is_dir():
        binary = direct / f"{name}-{_go_platform()}"
        if binary.exists():
            return binary
    return None


def _read_ddl(path: Path) -> tuple[AgentDDL, Any]:
    """Load a DDL and also return its ``metadata.provider`` (which AgentDDL does not keep)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DDLError(f"{path}: cannot load DDL: {exc.strerror or exc}") from None
    ddl = load_ddl(path, text=text)
    raw = json.loads(text)  # load_ddl parsed it already, so this cannot fail
    return ddl, (raw.get("metadata") or {}).get("provider")


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _discover(directories: Iterable[str | os.PathLike[str]]
              ) -> tuple[list[_Candidate], list[Refusal]]:
    """Find well-formed agent candidates (layout, DDL, names) in directory order."""
    candidates: dict[str, _Candidate] = {}
    refusals: list[Refusal] = []

    def consider(name: str, ddl_path: Path, base: Path) -> None:
        try:
            ddl, provider = _read_ddl(ddl_path)
        except DDLError as exc:
            executable = _executable_for(base, name)
            if executable is not None:  # an agent with a broken DDL, not a stray JSON file
                refusals.append(Refusal(str(ddl_path), f"broken DDL: {exc}", name))
            else:
                log.debug("%s: not a DDL beside an executable, ignored: %s", ddl_path, exc)
            return
        executable = _executable_for(base, name)
        if executable is None:
            if provider == "external":
                refusals.append(Refusal(str(ddl_path), f"the DDL says provider 'external' but "
                                        f"there is no executable {base / name}", name))
            else:  # e.g. a Ruby agent's JSON DDL in a shared MCollective agent directory
                log.debug("%s: no executable %s beside it, not an external agent",
                          ddl_path, base / name)
            return
        problem = None
        if not valid_name(name):
            problem = (f"{name!r} is not a valid agent name (letters, digits, '.', '_' "
                       "and '-')")
        elif ddl.name != name:
            problem = (f"the DDL's metadata.name is {ddl.name!r} but the file is named "
                       f"{name!r}; they must match")
        elif provider not in (None, "", "external"):
            problem = (f"the DDL's metadata.provider is {provider!r}; an external agent "
                       "has 'external' or none")
        elif name in RESERVED_NAMES:
            problem = f"{name!r} is a built-in agent and cannot be replaced"
        elif not ddl.actions:
            problem = "the DDL declares no actions"
        if problem is not None:
            refusals.append(Refusal(str(ddl_path), problem, name))
            return
        if not _is_executable_file(executable):
            refusals.append(Refusal(str(executable), "not executable (chmod +x it)", name))
            return
        if name in candidates:
            refusals.append(Refusal(str(executable), f"name clash: agent {name!r} is already "
                                    f"provided by {candidates[name].executable}", name))
            return
        candidates[name] = _Candidate(name, ddl, ddl_path, executable)

    for directory in directories:
        # Absolute: the agent runs in its own working directory.
        root = Path(os.path.abspath(directory))
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            refusals.append(Refusal(str(root), "agents directory does not exist"))
            continue
        except OSError as exc:
            refusals.append(Refusal(str(root), f"cannot read agents directory: "
                                    f"{exc.strerror or exc}"))
            continue
        names = {entry.name for entry in entries}
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "tmp":
                continue
            path = Path(entry.path)
            if entry.is_dir():
                nested = path / f"{entry.name}.json"
                if nested.is_file():
                    consider(entry.name, nested, path)
                continue  # else a multi-arch binary directory, or not an agent at all
            if entry.name.endswith(".json"):
                consider(entry.name[: -len(".json")], path, root)
                continue
            if entry.name.endswith(_NOT_AGENTS) or f"{entry.name}.json" in names:
                continue
            if _is_executable_file(path):
                hint = (f" (found the Ruby DDL {entry.name}.ddl; orch needs the JSON one, "
                        "e.g. from `choria plugin generate ddl`)"
                        if f"{entry.name}.ddl" in names else "")
                refusals.append(Refusal(str(path), f"missing DDL: expected "
                                        f"{root / (entry.name + '.json')} beside it{hint}",
                                        entry.name))
    return list(candidates.values()), refusals


def scan(
    directories: Iterable[str | os.PathLike[str]], settings: Settings | None = None
) -> tuple[list[type[Agent]], list[Refusal]]:
    """Find the external agents in ``directories`` and activation-check them.

    Returns one :class:`ExternalAgent` subclass per agent that is well-formed and agreed to
    activate, and a :class:`Refusal` for everything that looked like an agent but is not
    served. When two directories provide the same agent the first one wins (like
    ``$PATH``) and the later one is refused. ``settings`` supplies the limits and each
    agent's ``plugins.<name>`` section (its ``CHORIA_EXTERNAL_CONFIG``).
    """
    limits = Limits.from_settings(settings)
    candidates, refusals = _discover(directories)

    def check(candidate: _Candidate) -> str | None:
        try:
            return _activation_check(candidate, limits, settings)
        except Exception as exc:  # an orch bug must refuse one agent, not stop the scan
            log.exception("activation check of %s failed", candidate.executable)
            return f"activation check failed inside orch: {type(exc).__name__}: {exc}"

    if len(candidates) > 1:  # each check may take up to 2 s: run them side by side
        with ThreadPoolExecutor(max_workers=min(8, len(candidates)),
                                thread_name_prefix="orch-activation") as pool:
            verdicts = list(pool.map(check, candidates))
    else:
        verdicts = [check(candidate) for candidate in candidates]
    agents: list[type[Agent]] = []
    for candidate, problem in zip(candidates, verdicts, strict=True):
        if problem is None:
            agents.append(_agent_class(candidate))
        else:
            refusals.append(Refusal(str(candidate.executable), problem, candidate.name))
    return agents, refusals


def _activation_check(candidate: _Candidate, limits: Limits,
                      settings: Settings | None) -> str | None:
    """Run the activation protocol; return why the agent is refused, or None to load it."""
    request = {"$schema": SCHEMA_ACTIVATION, "protocol": PROTOCOL_ACTIVATION,
               "agent": candidate.name}
    config = settings.plugin(candidate.name) if settings is not None else {}
    outcome = _call(candidate.executable, PROTOCOL_ACTIVATION, request,
                    deadline=time.monotonic() + limits.activation_timeout, limits=limits,
                    facts={}, config=config)
    _log_output(outcome, f"agent={candidate.name} activation")
    failure = _process_failure(outcome, limits)
    if failure is not None:
        return f"activation check {failure}"
    if outcome.returncode != 0:
        return f"activation check exited with status {outcome.returncode}" \
               f"{_tail(outcome.stderr)}"
    if outcome.reply is None:
        return f"activation check wrote no reply{_tail(outcome.stderr)}"
    try:
        answer = json.loads(outcome.reply)
    except ValueError as exc:
        return f"activation reply is not valid JSON: {exc}"
    activate = answer.get("activate") if isinstance(answer, dict) else None
    if not isinstance(activate, bool):
        return 'activation reply must be {"activate": true} or {"activate": false}'
    if not activate:
        return "the agent declined to activate on this node (activate: false)"
    return None



def _agent_class(candidate: _Candidate) -> type[ExternalAgent]:
    """One subclass per agent, so that each has its own name, DDL and executable."""
    namespace = {
        "name": candidate.name,
        "executable": candidate.executable,
        "ddl_path": candidate.ddl_path,
        "_external_ddl": candidate.ddl,
        "__module__": __name__,
        "__doc__": f"External agent {candidate.name} ({candidate.executable}).",
    }
    return type(f"ExternalAgent[{candidate.name}]", (ExternalAgent,), namespace)
