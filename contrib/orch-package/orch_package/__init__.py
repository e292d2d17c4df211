"""orch-package: install, update, remove and audit packages across a fleet.

Installed beside orch, this distribution registers (through the ``orch`` entry-point group,
nothing else) the ``package`` agent and the ``orch package`` command. See ``README.md`` and
orch's ``docs/package.md``.
"""

__version__ = "0.1.0"
