"""Packages of a simulated node: kept in memory, never touching the machine.

Simulated nodes (``orch demo``, ``orch sim``, ``orch.testing`` fleets) share one real
machine, so their package agent must not run apt. Each simulated node gets a plausible
installed set instead — base packages every node has, plus those its Puppet classes imply —
at versions drawn per node from a small history of releases (so a fleet shows a version
distribution, and some nodes are behind), the same for the same identity every time. The
"repository" offers every version in :data:`RELEASES`; the last is the candidate. Actions
change the node's state as apt would.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

from orch_package.commands_run import CommandResult
from orch_package.providers import (
    ABSENT,
    Outdated,
    PackageState,
    ProviderError,
    check_name,
    check_version,
)

#: Versions the simulated repository has, oldest first, and how many nodes (of 100) are
#: still at each when the simulation starts.
RELEASES: dict[str, tuple[tuple[str, int], ...]] = {
    "openssl": (("3.0.15-1~deb12u1", 15), ("3.0.17-1~deb12u2", 25), ("3.0.19-1~deb12u2", 60)),
    "libssl3": (("3.0.15-1~deb12u1", 15), ("3.0.17-1~deb12u2", 25), ("3.0.19-1~deb12u2", 60)),
    "bash": (("5.2.15-2+b7", 100),),
    "coreutils": (("9.1-1", 100),),
    "cron": (("3.0pl1-162", 100),),
    "curl": (("7.88.1-10+deb12u8", 40), ("7.88.1-10+deb12u12", 60)),
    "openssh-server": (("1:9.2p1-2+deb12u3", 30), ("1:9.2p1-2+deb12u6", 70)),
    "ca-certificates": (("20230311", 100),),
    "nginx": (("1.22.1-9", 20), ("1.22.1-9+deb12u1", 30), ("1.24.0-1", 50)),
    "postgresql-15": (("15.8-0+deb12u1", 40), ("15.12-0+deb12u2", 60)),
    "redis-server": (("5:7.0.15-1~deb12u3", 100),),
    "haproxy": (("2.6.12-1+deb12u1", 50), ("2.6.12-1+deb12u2", 50)),
    "prometheus": (("2.42.0+ds-5+b5", 100),),
    "python3": (("3.11.2-1+b1", 100),),
}
BASE_PACKAGES = ("openssl", "libssl3", "bash", "coreutils", "cron", "curl", "openssh-server",
                 "ca-certificates")
CLASS_PACKAGES = {"nginx": ("nginx",), "postgresql": ("postgresql-15",),
                  "redis": ("redis-server",), "haproxy": ("haproxy",),
                  "prometheus": ("prometheus",), "python": ("python3",)}
ARCH = "amd64"


def _draw(identity: str, package: str) -> int:
    digest = hashlib.blake2s(f"{identity}/{package}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 100


def _initial_version(identity: str, package: str) -> str:
    point = _draw(identity, package)
    for version, share in RELEASES[package]:
        point -= share
        if point < 0:
            return version
    return RELEASES[package][-1][0]


def latest(package: str) -> str | None:
    releases = RELEASES.get(package)
    return releases[-1][0] if releases else None


class SimulatedProvider:
    """One simulated node's packages; thread-safe."""

    name = "simulated"

    def __init__(self, identity: str, classes: Iterable[str]) -> None:
        self.identity = identity
        names = list(BASE_PACKAGES)
        for cls in sorted(classes):
            names.extend(CLASS_PACKAGES.get(cls, ()))
        self._base = frozenset(names)
        #: Only what actions changed: a thousand nodes keep their defaults implicitly.
        self._changed: dict[str, str] = {}
        self._lock = threading.Lock()

    def _version(self, package: str) -> str:
        if package in self._changed:
            return self._changed[package]
        return _initial_version(self.identity, package) if package in self._base else ABSENT

    def status(self, package: str) -> PackageState:
        base = check_name(package).split(":", 1)[0]
        with self._lock:
            version = self._version(base)
        if version == ABSENT:
            return PackageState(base, ABSENT)
        return PackageState(base, version, ARCH, "installed")

    def change(self, verb: str, package: str, version: str | None) -> CommandResult:
        base = check_name(package).split(":", 1)[0]
        argv = ("simulated", verb, package)
        if version is not None:
            check_version(version)
        releases = [v for v, _ in RELEASES.get(base, ())]
        with self._lock:
            if verb == "uninstall":
                self._changed[base] = ABSENT
                return CommandResult(argv, 0, f"Removing {base} ...")
            if not releases:
                return CommandResult(argv, 100, f"E: Unable to locate package {base}")
            wanted = version or releases[-1]
            if wanted not in releases:
                return CommandResult(argv, 100, f"E: Version '{wanted}' for '{base}' was "
                                                "not found")
            if verb == "update" and self._version(base) == ABSENT:
                return CommandResult(argv, 0, f"Skipping {base}, it is not installed and "
                                              "only upgrades are requested.")
            self._changed[base] = wanted
        return CommandResult(argv, 0, f"Setting up {base} ({wanted}) ...")

    def outdated(self, package: str | None) -> list[Outdated]:
        names = [check_name(package).split(":", 1)[0]] if package else sorted(
            self._base | set(self._changed))
        out = []
        with self._lock:
            for name in names:
                installed, candidate = self._version(name), latest(name)
                if installed != ABSENT and candidate and installed != candidate:
                    out.append(Outdated(name, installed, candidate))
        return out

    def inventory(self) -> list[tuple[str, str]]:
        with self._lock:
            pairs = [(name, self._version(name)) for name in self._base | set(self._changed)]
        return sorted((f"{name}:{ARCH}", v) for name, v in pairs if v != ABSENT)

    def check_free(self) -> None:
        return None


__all__ = ["ProviderError", "SimulatedProvider", "latest"]
