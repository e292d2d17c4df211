"""systemd's readiness protocol (``sd_notify``), without a dependency.

With ``Type=notify`` systemd waits for ``READY=1`` on the datagram socket named by
``$NOTIFY_SOCKET`` before it counts the service as started, so ``systemctl start orch``
returns once the daemon consumes requests, not when the process merely exists. The
protocol is one datagram of ``KEY=value`` lines; a library for it would add more than it
saves. Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); False when not under systemd or it failed."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", address, exc)
        return False
    return True
