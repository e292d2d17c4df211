"""The ``inventory`` plugin section of the config, read and checked in one place.

```yaml
plugins:
  inventory:
    store: postgresql://orch@db.example.com/orch   # or sqlite:///var/lib/orch/inventory.db
    stale_after: 300          # seconds without a registration before a node is stale
    expire_after: 604800      # … before its record is deleted
    registration: true        # servers publish registrations
    registration_interval: 300   # how often a server re-registers (0: only on change)
    reply_copies: false       # servers copy replies to registries (job history survives
                              # a killed client; doubles reply traffic)
    seed: true                # orch registry asks the live fleet once on start
    job_history: true         # clients record every request and reply in the store
    job_retention: 2592000    # seconds a job is kept
```

The section is declared through ``orch_settings`` (:func:`orch.inventory.plugin.orch_settings`),
so orch checks it like its own settings: an unknown key gets "did you mean", a wrong type or
a negative duration is a :class:`~orch.core.errors.ConfigError` naming the key and where it
came from, and ``ORCH_INVENTORY_<KEY>`` works; ``orch server`` checks it at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.core import convert
from orch.core.config import Settings
from orch.core.sections import setting

SECTION = "inventory"


def _store_url(value: Any) -> str | None:
    """A store URL (``sqlite:///…``, ``postgresql://…``) or nothing."""
    if value is None:
        return None
    if not isinstance(value, str) or "://" not in value:
        raise ValueError("expected a store URL such as sqlite:///var/lib/orch/inventory.db")
    return value


def _fraction(value: Any) -> float:
    """0 or more and below 1."""
    number = convert.non_negative(value)
    if number >= 1:
        raise ValueError("expected a fraction, 0 or more and below 1")
    return number


@dataclass(frozen=True)
class InventorySettings:
    """``plugins: {inventory: {…}}``."""

    store: str | None = setting(
        None, _store_url,
        "The inventory store: `sqlite:///PATH` or `postgresql://USER@HOST/DB` (the "
        "`orch[postgresql]` extra). Without it there is no registration store, inventory "
        "discovery or job history. See [inventory.md](inventory.md).", default_doc="none")
    stale_after: float = setting(
        300.0, convert.non_negative,
        "Seconds without a registration before a node is stale (`auto` discovery then asks "
        "the fleet).")
    expire_after: float = setting(
        7 * 86400.0, convert.non_negative,
        "Seconds without a registration before a node's record is deleted.")
    registration: bool = setting(
        True, convert.boolean, "Whether `orch server` publishes registrations at all.")
    registration_interval: float = setting(
        300.0, convert.non_negative,
        "How often (seconds) a server re-registers; 0: only when its facts, classes or "
        "agents change.")
    registration_jitter: float = setting(
        0.2, _fraction,
        "Each interval is shortened by up to this fraction, at random, so a fleet restarted "
        "at once does not re-register in lock-step.")
    reply_copies: bool = setting(
        False, convert.boolean,
        "Servers copy each reply to the registries, so the job history survives a killed "
        "client (doubles reply traffic).")
    seed: bool = setting(
        True, convert.boolean, "Whether `orch registry` asks the live fleet once on start.")
    job_history: bool = setting(
        True, convert.boolean, "Whether clients record every request and reply in the store.")
    job_retention: float = setting(
        30 * 86400.0, convert.non_negative, "Seconds a job is kept in the history.")

    @classmethod
    def from_settings(cls, settings: Settings) -> InventorySettings:
        """The checked section (see :meth:`orch.core.config.Settings.section`)."""
        return settings.section(SECTION, cls)
