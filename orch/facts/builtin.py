"""Built-in facts (os, kernel, hostname, cpus, memory, orch version) and YAML/JSON fact files."""

from __future__ import annotations

import json
import os
import platform
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orch
from orch.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch.core.config import Settings
    from orch.core.facts import FactSource


class SystemFacts:
    """Facts every node has without configuration; every other source overrides them."""

    name = "system"
    priority = 0

    def load(self) -> Mapping[str, Any]:
        uname = platform.uname()
        return {
            "hostname": socket.gethostname(),
            "kernel": uname.system,
            "kernelrelease": uname.release,
            "architecture": uname.machine,
            "os": _os_release(),
            "processorcount": os.cpu_count() or 1,
            "memorysize_mb": _memory_mb(),
            "orch_version": orch.__version__,
            "python_version": platform.python_version(),
        }


@dataclass(frozen=True)
class FileFacts:
    """Facts from a YAML or JSON file (``.json`` is read as JSON, anything else as YAML)."""

    path: str
    #: The operator's own files win over every plugin's facts.
    priority = 100

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def load(self) -> Mapping[str, Any]:
        """The file's facts; :class:`FactsError` naming the file (and line) if it does not
        parse or is not a mapping. A missing or unreadable file is an ordinary failure."""
        from orch.core.facts import FactsError

        text = Path(self.path).read_text()
        try:
            if self.path.endswith(".json"):
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise FactsError(f"fact file {self.path}, line {exc.lineno} column {exc.colno}: "
                             f"not valid JSON: {exc.msg}") from None
        except Exception as exc:  # yaml.YAMLError; yaml is imported only for YAML files
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise FactsError(f"fact file {self.path}{where}: not valid YAML: {problem}"
                             ) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise FactsError(f"fact file {self.path}: must hold a mapping of fact: value, "
                             f"not a {type(data).__name__}")
        return data


def _os_release() -> dict[str, str]:
    info = {"name": platform.system(), "family": platform.system(), "release": ""}
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return info
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    clean = {k: v.strip().strip('"') for k, v in fields.items()}
    info["name"] = clean.get("NAME", info["name"]).split()[0]
    info["family"] = clean.get("ID_LIKE", clean.get("ID", info["family"])).split()[0].title()
    info["release"] = clean.get("VERSION_ID", "")
    return info


def _memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 0


@hookimpl
def orch_fact_sources(settings: Settings) -> Iterable[FactSource]:
    sources: list[FactSource] = [SystemFacts()]
    sources.extend(FileFacts(path) for path in settings.facts)
    return sources
