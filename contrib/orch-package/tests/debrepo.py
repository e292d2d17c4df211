"""Tiny .deb packages built with dpkg-deb and a local file repository apt can use.

What the real-dpkg tests install is only ever ``orch-test-<random>``: one file under
/usr/share/doc, no maintainer scripts, no dependencies. apt is pointed at a private
sources list, list directory and archive cache (:attr:`LocalRepo.apt_options`), so the
machine's own apt state is neither read nor written; dpkg's database is the machine's
(apt has no supported way to drive dpkg on another ``--admindir``), and :meth:`purge`
removes the test package from it afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT = 120


def build_deb(workdir: Path, name: str, version: str) -> Path:
    root = workdir / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    doc = root / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "README").write_text(f"{name} {version}: installed by orch-package's tests\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: orch tests <orch@example.invalid>\nPriority: optional\nSection: misc\n"
        f"Description: orch-package test package\n throw-away, removed after the test\n")
    deb = workdir / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return deb


def packages_entry(deb: Path, repo: Path) -> str:
    control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                             text=True, timeout=TIMEOUT).stdout.rstrip("\n")
    data = deb.read_bytes()
    return (f"{control}\nFilename: ./{deb.relative_to(repo)}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")


@dataclass
class LocalRepo:
    root: Path
    name: str = field(default_factory=lambda: f"orch-test-{uuid.uuid4().hex[:10]}")
    debs: list[Path] = field(default_factory=list)

    @property
    def apt_options(self) -> list[str]:
        return [f"Dir::Etc::SourceList={self.root / 'sources.list'}",
                f"Dir::Etc::SourceParts={self.root / 'sources.list.d'}",
                f"Dir::State::Lists={self.root / 'lists'}",
                f"Dir::Cache::Archives={self.root / 'archives'}",
                "Dir::Cache::pkgcache=", "Dir::Cache::srcpkgcache="]

    def publish(self, *versions: str) -> None:
        """Build ``versions`` of the package and (re)write the repository's index."""
        pool = self.root / "repo"
        pool.mkdir(parents=True, exist_ok=True)
        for sub in ("sources.list.d", "lists/partial", "archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for version in versions:
            self.debs.append(build_deb(pool, self.name, version))
        (pool / "Packages").write_text("\n".join(packages_entry(d, pool) for d in self.debs))
        (self.root / "sources.list").write_text(f"deb [trusted=yes] file:{pool} ./\n")
        self.apt(["update"])

    def apt(self, args: list[str]) -> None:
        argv = ["apt-get", "-q"]
        for option in self.apt_options:
            argv += ["-o", option]
        subprocess.run([*argv, *args], check=True, capture_output=True, timeout=TIMEOUT)

    def purge(self) -> None:
        subprocess.run(["dpkg", "--purge", self.name], capture_output=True, timeout=TIMEOUT)
