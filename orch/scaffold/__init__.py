"""``orch plugin new``: a pip-installable plugin distribution for one agent, from templates.

The templates are plain files in ``templates/`` (package data, read with
:mod:`importlib.resources`) filled in with :class:`string.Template`: a plugin author can read
them as the files they become, and no template engine is needed. ``$$`` in a template is a
literal ``$`` (the DDL's ``$$schema`` key).

Why values are escaped per file: the description and author land in a JSON DDL, in
``setup.cfg`` (read by :mod:`configparser`, where ``%`` starts an interpolation) and in
Markdown, so each gets the spelling its file needs (``${description_json}``,
``${description_cfg}``, ``${description}``); no template interpolates them into Python source.

The result installs as is (``pip install ./orch-NAME``), answers ``orch rpc NAME echo``
at once, and its test passes with the ``orch.testing`` fixtures.
"""

from __future__ import annotations

import getpass
import json
import keyword
import os
import re
import shutil
import string
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orch
from orch.core.errors import OrchError

#: An agent name the scaffold accepts: it becomes the agent's name on the command line, the
#: entry point's name and part of the package name ``orch_NAME``, so it must be all three.
AGENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_NAME_LENGTH = 50
#: Agents orch itself ships; a plugin of the same name could never be installed next to it.
BUILTIN_AGENTS = frozenset({"rpcutil"})
DEFAULT_LICENSE = "Apache-2.0"

#: ``(template, path in the distribution)``; paths are formatted with the variables.
FILES: tuple[tuple[str, str], ...] = (
    ("setup.cfg.tmpl", "setup.cfg"),
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("README.md.tmpl", "README.md"),
    ("gitignore.tmpl", ".gitignore"),
    ("package_init.py.tmpl", "{package}/__init__.py"),
    ("agent.py.tmpl", "{package}/agent.py"),
    ("ddl.json.tmpl", "{package}/{name}.json"),
    ("test_agent.py.tmpl", "tests/test_{name}.py"),
)


class ScaffoldError(OrchError):
    """The plugin cannot be created as asked (bad name, existing directory)."""


@dataclass(frozen=True)
class Scaffold:
    """What :func:`create` wrote."""

    name: str
    root: Path
    files: tuple[Path, ...]

    @property
    def distribution(self) -> str:
        return self.root.name

    @property
    def package(self) -> str:
        return f"orch_{self.name}"


def check_name(name: str) -> str:
    """Return ``name`` if it can name an agent, its entry point and its package, else raise
    :class:`ScaffoldError` saying what to change."""
    if not AGENT_NAME.match(name):
        hint = ""
        candidate = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        if candidate and AGENT_NAME.match(candidate):
            hint = f" (for example {candidate!r})"
        raise ScaffoldError(
            f"{name!r} cannot name an agent: use lower-case letters, digits and '_', starting "
            f"with a letter{hint}")
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"{name!r} is too long for an agent name "
                            f"(at most {MAX_NAME_LENGTH} characters)")
    if name in BUILTIN_AGENTS:
        raise ScaffoldError(f"{name!r} is an agent orch ships; choose another name")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword; choose another name")
    return name


def class_name(name: str) -> str:
    """``disk_usage`` → ``DiskUsageAgent`` (the suffix keeps it clear of imported names)."""
    return "".join(part.capitalize() for part in name.split("_") if part) + "Agent"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def variables(name: str, author: str | None = None, description: str | None = None,
              license: str | None = None) -> dict[str, str]:
    """Everything the templates may use, each value spelled for the file it goes into."""
    author = _one_line(author or "") or _default_author()
    description = _one_line(description or "") or f"The {name} agent for orch"
    license = _one_line(license or "") or DEFAULT_LICENSE
    values = {
        "name": name,
        "package": f"orch_{name}",
        "dist": f"orch-{name}",
        "class_name": class_name(name),
        "orch_version": orch.__version__,
    }
    for key, value in (("author", author), ("description", description),
                       ("license", license)):
        values[key] = value
        values[f"{key}_json"] = json.dumps(value)
        values[f"{key}_cfg"] = value.replace("%", "%%")
    return values


def _default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers without passwd)
        return "unknown"


def template_text(template: str) -> str:
    """The text of one template shipped in ``orch/scaffold/templates``."""
    return resources.files(__name__).joinpath("templates", template).read_text("utf-8")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill in ``template``; a placeholder without a value is a bug of orch, so it raises."""
    try:
        return string.Template(template_text(template)).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ScaffoldError(f"template {template} is broken: {exc!r}") from None


def create(name: str, parent: str | os.PathLike[str] = ".", *, author: str | None = None,
           description: str | None = None, license: str | None = None) -> Scaffold:
    """Write the distribution ``orch-NAME`` in ``parent`` and return what was written.

    Refuses an existing ``orch-NAME`` (never overwrites an author's work). The files are
    written in a temporary directory beside it and moved into place at the end, so a
    failure leaves nothing half-written.
    """
    check_name(name)
    parent_path = Path(parent)
    if not parent_path.is_dir():
        raise ScaffoldError(f"{parent_path} is not a directory")
    values = variables(name, author, description, license)
    root = parent_path / values["dist"]
    if root.exists() or root.is_symlink():
        raise ScaffoldError(f"{root} already exists; remove it or choose another --dir")
    staging = Path(tempfile.mkdtemp(prefix=f".{values['dist']}-", dir=parent_path))
    try:
        written = []
        for template, target in FILES:
            relative = Path(target.format(**values))
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(template, values), encoding="utf-8")
            written.append(root / relative)
        staging.chmod(0o755)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Scaffold(name, root, tuple(written))
