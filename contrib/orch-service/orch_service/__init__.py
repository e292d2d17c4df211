"""orch-service: start, stop, restart, reload and inspect services across a fleet.

Installed beside orch, this distribution registers (through the ``orch`` entry-point group,
nothing else) the ``service`` agent and the ``orch service`` command. See ``README.md`` and
orch's ``docs/service.md``.
"""

__version__ = "0.1.0"
