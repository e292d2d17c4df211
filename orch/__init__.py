"""orch: choose nodes with a filter, run an action on all of them at once, get every reply back.

The public surface a program imports lives here and in :mod:`orch.core.client`; plugin authors
import :data:`hookimpl` and the types they implement.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
