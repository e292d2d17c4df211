"""Simulated fleets: many full orch servers on a real broker, for demos, tests and benchmarks.

:mod:`orch.sim.facts` draws nodes from a plausible fleet, :mod:`orch.sim.pki` gives each its
own certificate from one shared CA, :mod:`orch.sim.worker` serves a slice of them in one
process, and :class:`~orch.sim.simulation.Simulation` spreads the fleet over worker
processes (``orch sim``) or serves it in this one (``orch demo``).
"""

from orch.sim.simulation import Progress, SimConfig, SimError, Simulation

__all__ = ["Progress", "SimConfig", "SimError", "Simulation"]
