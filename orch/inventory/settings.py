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

A wrong type or a negative duration is a :class:`~orch.core.errors.ConfigError` naming the
key, so a typo is reported when a command starts, not as a stack trace later.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from orch.core.config import Settings
from orch.core.errors import ConfigError

SECTION = "inventory"


@dataclass(frozen=True)
class InventorySettings:
    store: str | None = None
    stale_after: float = 300.0
    expire_after: float = 7 * 86400.0
    #: Whether ``orch server`` publishes registrations at all.
    registration: bool = True
    registration_interval: float = 300.0
    #: Each interval is shortened by up to this fraction, at random, so a fleet restarted
    #: at once does not re-register in lock-step.
    registration_jitter: float = 0.2
    #: Whether servers publish a copy of each reply for registries (orch.inventory.replycopy).
    reply_copies: bool = False
    #: Whether ``orch registry`` asks the live fleet once on start (orch.inventory.seed).
    seed: bool = True
    job_history: bool = True
    job_retention: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> InventorySettings:
        section: dict[str, Any] = settings.plugin(SECTION)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"plugins.{SECTION}: unknown setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in section.items():
            values[key] = _convert(key, value, getattr(cls, key))
        if values.get("registration_jitter", 0.0) >= 1.0:
            raise ConfigError(f"plugins.{SECTION}.registration_jitter must be below 1")
        return cls(**values)


def _convert(key: str, value: Any, default: Any) -> Any:
    where = f"plugins.{SECTION}.{key}"
    if key == "store":
        if value is None:
            return None
        if not isinstance(value, str) or "://" not in value:
            raise ConfigError(f"{where} must be a store URL such as "
                              f"sqlite:///var/lib/orch/inventory.db, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where} must be a number of seconds (0 or more), got {value!r}")
    return float(value)
