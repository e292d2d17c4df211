"""Package providers: how a node's package manager is asked, and what it reports.

A provider answers status, inventory and "what would an update change" questions and runs
install, update and uninstall, with argv built here so tests can check the commands. The
apt/dpkg provider is the real one; :class:`PackageProvider` is the interface an rpm/dnf
provider implements (not written yet: ``choose`` says so on such a node).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from typing import Protocol

from orch_package.commands_run import QUERY_LIMIT, CommandResult, run_command
from orch_package.config import PackagePluginConfig
from orch_package.names import NAME_HELP, VERSION_HELP, valid_name, valid_version

ABSENT = "absent"
VERBS = ("install", "update", "uninstall")


class ProviderError(Exception):
    """The provider cannot act at all (no package manager, a bad name, a timeout)."""


@dataclass(frozen=True)
class PackageState:
    name: str
    #: The installed version, or :data:`ABSENT`.
    ensure: str
    arch: str = ""
    #: The package database's word for it (installed, not-installed, config-files,
    #: half-configured ...).
    status: str = "not-installed"

    @property
    def installed(self) -> bool:
        return self.ensure != ABSENT

    def outputs(self) -> dict[str, object]:
        return {"package": self.name, "ensure": self.ensure, "installed": self.installed,
                "version": "" if self.ensure == ABSENT else self.ensure, "arch": self.arch,
                "db_status": self.status}


@dataclass(frozen=True)
class Outdated:
    name: str
    installed: str
    candidate: str

    def to_json(self) -> dict[str, str]:
        return {"package": self.name, "installed": self.installed, "candidate": self.candidate}


class PackageProvider(Protocol):
    """What the agent needs from a package manager."""

    name: str

    def status(self, package: str) -> PackageState: ...

    def change(self, verb: str, package: str, version: str | None) -> CommandResult:
        """``install`` (``version`` or the candidate), ``update`` (to ``version`` or the
        candidate), ``uninstall``."""
        ...

    def outdated(self, package: str | None) -> list[Outdated]:
        """What an update would change: ``package`` only, or every installed package."""
        ...

    def inventory(self) -> list[tuple[str, str]]:
        """``(name, version)`` of every installed package, sorted."""
        ...

    def check_free(self) -> None:
        """Raise ``lock.Busy`` when another package manager holds the database."""
        ...


def check_name(package: str) -> str:
    if not valid_name(package):
        raise ProviderError(f"{package!r} is not a package name ({NAME_HELP})")
    return package


def check_version(version: str) -> str:
    if not valid_version(version):
        raise ProviderError(f"{version!r} is not {VERSION_HELP}")
    return version


_INST = re.compile(r"^Inst (\S+) \[([^\]]+)\] \((\S+)")


class AptProvider:
    """apt-get for changes, apt-cache for candidates, dpkg-query for what is installed."""

    name = "apt"

    def __init__(self, config: PackagePluginConfig, apt_get: str, apt_cache: str,
                 dpkg_query: str) -> None:
        self.config = config
        self.apt_get, self.apt_cache, self.dpkg_query = apt_get, apt_cache, dpkg_query
        self.timeout = config.command_timeout

    def _options(self) -> list[str]:
        return [arg for option in self.config.apt_options for arg in ("-o", option)]

    def argv(self, verb: str, package: str, version: str | None = None) -> list[str]:
        check_name(package)
        if version is not None:
            check_version(version)
        common = [self.apt_get, "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
                  "-o", "Dpkg::Options::=--force-confold", "-o", "DPkg::Lock::Timeout=0",
                  *self._options()]
        target = package if version is None else f"{package}={version}"
        if verb == "install":
            return [*common, "--no-install-recommends", "install", target]
        if verb == "update":
            if version is None:
                return [*common, "--only-upgrade", "install", package]
            return [*common, "--allow-downgrades", "install", target]
        if verb == "uninstall":
            return [*common, "remove", package]
        raise ProviderError(f"unknown action {verb!r}")

    def _query(self, argv: list[str]) -> CommandResult:
        result = run_command(argv, self.timeout, QUERY_LIMIT)
        if result.timed_out:
            raise ProviderError(f"{' '.join(argv[:2])} did not answer within "
                                f"{self.timeout:g}s")
        return result

    def status(self, package: str) -> PackageState:
        result = self._query([self.dpkg_query, "-W", "-f",
                              "${db:Status-Status}\\t${Version}\\t${Architecture}\\n",
                              check_name(package)])
        rows = [line.split("\t") for line in result.output.splitlines() if line.count("\t") == 2]
        if not rows:
            return PackageState(package, ABSENT)
        rows.sort(key=lambda row: row[0] != "installed")
        status, version, arch = rows[0]
        return PackageState(package, version if status == "installed" else ABSENT, arch,
                            status)

    def change(self, verb: str, package: str, version: str | None) -> CommandResult:
        return run_command(self.argv(verb, package, version), self.timeout)

    def outdated(self, package: str | None) -> list[Outdated]:
        if package is not None:
            result = self._query([self.apt_cache, *self._options(), "policy",
                                  check_name(package)])
            fields = dict(re.findall(r"^\s*(Installed|Candidate): (\S+)", result.output,
                                     re.MULTILINE))
            installed, candidate = fields.get("Installed"), fields.get("Candidate")
            if installed in (None, "(none)") or candidate in (None, "(none)") or \
                    installed == candidate:
                return []
            return [Outdated(package, str(installed), str(candidate))]
        result = self._query([self.apt_get, "-s", "-q", "-o", "Debug::NoLocking=1",
                              *self._options(), "upgrade"])
        return [Outdated(*match.groups()) for match in
                (_INST.match(line) for line in result.output.splitlines()) if match]

    def inventory(self) -> list[tuple[str, str]]:
        result = self._query([self.dpkg_query, "-W", "-f",
                              "${db:Status-Status}\\t${binary:Package}\\t${Version}\\n"])
        rows = [line.split("\t") for line in result.output.splitlines()]
        return sorted((row[1], row[2]) for row in rows if len(row) == 3 and
                      row[0] == "installed")

    def check_free(self) -> None:
        from orch_package.lock import check_free

        check_free(self.config.lock_files)


def _find(command: str) -> str | None:
    return shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")


def choose(config: PackagePluginConfig) -> PackageProvider:
    """The provider ``config.provider`` names; for ``auto``, what this node has."""
    if config.provider == "simulated":
        raise ProviderError("the simulated provider belongs to a simulated node's agent")
    tools = [_find(name) for name in ("apt-get", "apt-cache", "dpkg-query")]
    if all(tools):
        apt_get, apt_cache, dpkg_query = (str(tool) for tool in tools)
        return AptProvider(config, apt_get, apt_cache, dpkg_query)
    if config.provider == "auto" and (_find("dnf") or _find("rpm")):
        raise ProviderError("this node uses rpm/dnf; orch-package's rpm/dnf provider is not "
                            "written yet (only apt/dpkg)")
    raise ProviderError("apt-get, apt-cache and dpkg-query not found on this node")
