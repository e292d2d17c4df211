"""Build the sdist and wheel of orch and of every ``contrib/*/`` distribution.

``tox -e build`` runs this (``python deploy/build_dists.py --outdir dist``). Each
distribution is built with ``python -m build``: the sdist first, then the wheel from that
sdist, so a file missing from the sdist fails here rather than on a user's machine. A
contrib directory added later is picked up without editing this file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "setup.cfg", "setup.py")


def distributions(root: Path = ROOT) -> list[Path]:
    """The repository root, then each ``contrib/<name>/`` that is a Python project."""
    found = [root]
    contrib = root / "contrib"
    if contrib.is_dir():
        found += sorted(path for path in contrib.iterdir()
                        if path.is_dir() and any((path / f).exists() for f in PROJECT_FILES))
    return found


def build(source: Path, outdir: Path, isolation: bool) -> None:
    command = [sys.executable, "-m", "build", "--outdir", str(outdir)]
    if not isolation:
        command.append("--no-isolation")
    print(f"build_dists: {source.relative_to(ROOT) if source != ROOT else '.'}", flush=True)
    subprocess.run([*command, str(source)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", default=str(ROOT / "dist"), help="where to put them")
    parser.add_argument("--isolation", action="store_true",
                        help="build each in a fresh isolated environment (downloads "
                             "setuptools); default: use this environment's")
    args = parser.parse_args(argv)
    outdir = Path(args.outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    sources = distributions()
    try:
        for source in sources:
            build(source, outdir, args.isolation)
    except subprocess.CalledProcessError as exc:
        print(f"build_dists: failed: {exc}", file=sys.stderr)
        return 1
    built = sorted(path.name for path in outdir.iterdir()
                   if path.suffix == ".whl" or path.name.endswith(".tar.gz"))
    print(f"build_dists: {len(sources)} distribution(s) into {outdir}:")
    for name in built:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
