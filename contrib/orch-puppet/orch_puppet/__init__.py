"""orch-puppet: Puppet runs, resources, facts and classes for orch.

Installed beside orch, this distribution registers (through the ``orch`` entry-point group,
nothing else) the ``puppet`` agent, a facter fact source and the ``orch puppet`` commands.
See ``README.md`` and orch's ``docs/puppet.md``.
"""

__version__ = "0.1.0"
