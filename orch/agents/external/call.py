"""One call of an external agent under the protocol: the request, facts and config files
in a private directory, the child run under :class:`~orch.agents.external.process.Supervisor`,
the reply file read safely, the directory removed."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orch.agents.external.process import _Capture, _Outcome, _Supervisor, _write_private
from orch.agents.external.settings import (
    ENV_CONFIG,
    ENV_FACTS,
    ENV_PROTOCOL,
    ENV_REPLY,
    ENV_REQUEST,
    Limits,
)

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")


def _config_text(config: Mapping[str, Any]) -> str:
    """A plugin settings section as the ``key = value`` lines Choria's plugin.d files use."""
    lines = []
    for key, value in config.items():
        if isinstance(value, str) and "\n" not in value:
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = json.dumps(value, default=str)
        lines.append(f"{key} = {text}\n")
    return "".join(lines)



def _call(executable: Path, protocol: str, payload: Mapping[str, Any], *, deadline: float,
          limits: Limits, facts: Mapping[str, Any], config: Mapping[str, Any]) -> _Outcome:
    """Run ``executable`` once under the protocol, in a private directory removed after.

    ``tempfile`` and ``shutil`` are imported here: every daemon imports this module, and
    ``shutil`` brings the bz2 and lzma libraries (about 0.9 MB RSS with ``tempfile``, orch
    issue 13) that a daemon without external agents never uses."""
    import shutil
    import tempfile

    outcome = _Outcome(_Capture(limits.max_log_bytes), _Capture(limits.max_log_bytes))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="orch-external-"))  # mode 0700
    try:
        request_path, reply_path = workdir / "request.json", workdir / "reply.json"
        facts_path, config_path = workdir / "facts.json", workdir / "config"
        _write_private(request_path, json.dumps(payload, default=str).encode())
        # Choria creates the reply file empty, and helper libraries (go-external) refuse
        # to write a reply file that does not exist yet.
        _write_private(reply_path, b"")
        _write_private(facts_path, json.dumps(dict(facts), default=str).encode())
        if config:  # like a missing plugin.d/<agent> file in Choria: path set, no file
            _write_private(config_path, _config_text(config).encode())
        env = {
            ENV_REQUEST: str(request_path),
            ENV_REPLY: str(reply_path),
            ENV_PROTOCOL: protocol,
            ENV_CONFIG: str(config_path),
            ENV_FACTS: str(facts_path),
            # Only PATH from the daemon: its environment may hold secrets, and Choria
            # passes nothing else either. TMPDIR keeps the agent's scratch files in the
            # directory that is removed after the call.
            "PATH": os.environ.get("PATH", os.defpath),
            "TMPDIR": str(workdir),
        }
        argv = [str(executable), str(request_path), str(reply_path), protocol]
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=workdir, env=env, close_fds=True,
                start_new_session=True,  # its own process group, killed as a whole
            )
        except OSError as exc:
            outcome.spawn_error = f"could not start {executable}: {exc.strerror or exc}"
            return outcome
        with _Supervisor(proc, reply_path, limits, outcome) as supervisor:
            supervisor.run(deadline)
        if outcome.returncode is not None and not (outcome.timed_out
                                                   or outcome.reply_too_large):
            _read_reply(reply_path, limits, outcome)
        return outcome
    finally:
        outcome.elapsed = time.monotonic() - started
        shutil.rmtree(workdir, ignore_errors=True)
        if workdir.exists():
            log.warning("could not remove the external agent work directory %s", workdir)



def _read_reply(path: Path, limits: Limits, outcome: _Outcome) -> None:
    """Read the reply file, refusing anything but a regular file under the size cap.

    O_NONBLOCK and O_NOFOLLOW: an agent that replaced its reply file by a FIFO or a
    symlink must not block or redirect the daemon.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        outcome.reply_error = f"cannot open its reply file: {exc.strerror or exc}"
        return
    with open(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            outcome.reply_error = "its reply file is not a regular file"
            return
        data = handle.read(limits.max_reply_bytes + 1)
    if len(data) > limits.max_reply_bytes:
        outcome.reply_too_large = True
    elif data.strip():
        outcome.reply = data
