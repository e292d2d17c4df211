"""Writing the CA's files: all at once or not at all, private keys 0600 from their first byte.

Why apart: the CA directory (:mod:`~orch.security.pki.store`), its ledger and its CRL
(:mod:`~orch.security.pki.lifecycle`) all write files the same careful way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from orch.security.pki.keys import PKIError

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600
DIR_MODE = 0o700


def write_file(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write ``data`` to ``path`` created with ``mode``, all at once or not at all.

    The data goes to a fresh temporary file in the same directory, created by ``os.open``
    with ``mode`` and O_EXCL (so a private key is 0600 from its first byte; nothing is
    chmod-ed afterwards), then is hard-linked to ``path`` — which fails if ``path`` exists,
    so nothing is overwritten by accident — or, with ``force``, renamed over it.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def mkdir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise PKIError(f"cannot create directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise PKIError(f"{path} exists and is not a directory")
