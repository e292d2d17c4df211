"""The pluggy markers of orch: what a plugin decorates its hook implementations with.

Kept apart from everything else (it imports only pluggy) so that importing the marker —
which every plugin module does first — never pulls in the DDL, the protocol or any plugin,
and no import cycle can run through it.
"""

from __future__ import annotations

import pluggy

PROJECT = "orch"
ENTRY_POINT_GROUP = "orch"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
