"""The floor of a known-list call on orch's stack: what its libraries cost before orch works.

    python bench/floor.py [BROKER_URL]

Imports what ``orch rpc … --nodes FILE`` cannot do without — click for the command line,
pluggy for plugins, kombu and amqp for the broker (the way orch imports them:
:func:`orch.transports.kombu_import.prepare` first, so neither PyYAML nor
``importlib.metadata`` is loaded), libsodium through PyNaCl's bindings for signatures, json
and logging — then connects to the broker, declares a private reply queue as orch's client
does, and exits. It sends nothing and reads no settings, certificates or replies: the time it
takes is the part of every orch command that orch's own code cannot remove, short of
changing those libraries. ``bench/sidebyside.py`` times it beside ``mco rpc --nodes``: when
this floor alone is not twice as fast, no orch code can make the whole command so.
"""

from __future__ import annotations

import json  # noqa: F401 - imported for its cost, as the client does
import logging  # noqa: F401
import os
import sys
import uuid

import click  # noqa: F401
import pluggy  # noqa: F401

from orch.transports.kombu_import import prepare

prepare()

import kombu  # noqa: E402
from nacl import _sodium  # noqa: E402,F401  # type: ignore[attr-defined,unused-ignore]

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("ORCH_BROKER", BROKER)
    with kombu.Connection(url, connect_timeout=5) as connection:
        connection.connect()
        queue = kombu.Queue(f"floor.{uuid.uuid4().hex}", durable=False, auto_delete=True,
                            exclusive=True)
        queue(connection.default_channel).declare()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
