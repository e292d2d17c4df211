"""Starting Puppet: background catalog runs, signals to a running daemon, one-resource
applies through the RAL.

Every command is an argv list (no shell anywhere) with a deadline: a background run is
reaped by a thread that terminates it after ``max_run_time``; foreground commands use
``subprocess.run(timeout=...)``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from orch.plugin import terminate_group

from orch_puppet.config import PuppetPluginConfig
from orch_puppet.paths import PuppetPaths
from orch_puppet.validation import ResourceRequest, RunOptions

log = logging.getLogger(__name__)

#: Seconds a terminated run gets to exit before SIGKILL.
TERMINATE_GRACE = 30.0


def effective_splay(options: RunOptions, config: PuppetPluginConfig) -> bool:
    """``force`` always runs now; otherwise the request's splay, else the node's default."""
    if options.force:
        return False
    return config.splay if options.splay is None else options.splay


def run_argv(puppet_bin: str, paths: PuppetPaths, options: RunOptions,
             config: PuppetPluginConfig) -> list[str]:
    """The ``puppet agent --onetime`` command line for a checked ``runonce`` request.

    ``--no-usecacheonfailure`` (unless configured otherwise, or a cached catalog was asked
    for): Puppet's default silently applies the previous catalog when the compile fails and
    exits as if all went well; an orchestrator must see that run as failed.
    """
    argv = [puppet_bin, "agent", *paths.confdir_args(), "--onetime", "--no-daemonize",
            "--color=false", "--verbose", "--detailed-exitcodes"]
    if effective_splay(options, config):
        argv.append("--splay")
        limit = options.splaylimit or config.splaylimit or paths.splaylimit
        if limit:
            argv += ["--splaylimit", str(limit)]
    else:
        argv.append("--no-splay")
    if options.noop is not None:
        argv.append("--noop" if options.noop else "--no-noop")
    if options.tags:
        argv += ["--tags", ",".join(options.tags)]
    if options.skip_tags:
        argv += ["--skip_tags", ",".join(options.skip_tags)]
    if options.environment:
        argv += ["--environment", options.environment]
    if options.server:
        host, port = options.server
        # server_list wins over server in Puppet; set both so that either is honoured.
        argv += ["--server", host, "--server_list", f"{host}:{port}" if port else host]
        if port:
            argv += ["--serverport", str(port)]
    if options.use_cached_catalog is not None:
        argv.append("--use_cached_catalog" if options.use_cached_catalog
                    else "--no-use_cached_catalog")
    if options.ignoreschedules:
        argv.append("--ignoreschedules")
    if not config.usecacheonfailure and not options.use_cached_catalog:
        argv.append("--no-usecacheonfailure")
    return argv


@dataclass
class RunRecord:
    """One run this agent started."""

    pid: int
    argv: list[str]
    started: float
    exit_code: int | None = None
    finished: float | None = None


class BackgroundRuns:
    """The runs this agent instance started: at most one at a time, each reaped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.last: RunRecord | None = None

    def alive(self) -> bool:
        """True from the moment a run is spawned until it exits — it covers the second or
        two before Puppet writes its run lock."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def start(self, argv: list[str], log_path: Path | None, max_run_time: float,
              on_exit: Callable[[RunRecord], None] | None = None) -> RunRecord:
        """Spawn ``argv`` in its own session (it outlives an orch restart) and reap it."""
        output: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                output = log_path.open("wb")
            except OSError as exc:
                log.warning("cannot write the run log %s (%s); discarding the run's output",
                            log_path, exc.strerror)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True)
        finally:
            if not isinstance(output, int):
                output.close()
        record = RunRecord(proc.pid, argv, time.time())
        with self._lock:
            self._proc = proc
            self.last = record
        threading.Thread(target=self._reap, args=(proc, record, max_run_time, on_exit),
                         name=f"orch-puppet-run-{proc.pid}", daemon=True).start()
        log.info("started puppet run pid=%d: %s", proc.pid, " ".join(argv))
        return record

    def _reap(self, proc: subprocess.Popen[bytes], record: RunRecord, max_run_time: float,
              on_exit: Callable[[RunRecord], None] | None) -> None:
        try:
            proc.wait(timeout=max_run_time)
        except subprocess.TimeoutExpired:
            log.error("puppet run pid=%d still going after %gs: terminating it", proc.pid,
                      max_run_time)
            terminate_group(proc, TERMINATE_GRACE)
        record.exit_code = proc.returncode
        record.finished = time.time()
        log.info("puppet run pid=%d exited %s after %.1fs", proc.pid, proc.returncode,
                 record.finished - record.started)
        if on_exit is not None:
            try:
                on_exit(record)
            except Exception:  # a callback failing must not kill the reaper silently
                log.exception("after-run callback failed")


def signal_daemon(pid: int) -> None:
    """Ask a running ``puppet agent`` daemon to start a run now (SIGUSR1)."""
    os.kill(pid, signal.SIGUSR1)


# -- one resource through the RAL ------------------------------------------------------------


class ResourceError(Exception):
    """Puppet could not apply the resource (unknown type, bad parameter, no Ruby …)."""


def ral_script() -> Path:
    """The Ruby helper shipped with this package.

    ``importlib.resources`` is imported here: every daemon imports this module, and an idle
    one then saves that import graph (about 0.9 MB RSS, orch issue 13)."""
    from importlib import resources

    return Path(str(resources.files("orch_puppet").joinpath("ral_apply.rb")))


def apply_resource(ruby: list[str], paths: PuppetPaths, request: ResourceRequest,
                   timeout: float) -> dict[str, Any]:
    """Apply ``request`` with Puppet's RAL (``Puppet::Resource.indirection.save``).

    The same call ``puppet resource TYPE NAME k=v`` makes, run by a small Ruby helper so
    that the transaction report comes back as JSON: whether anything changed, the events
    and the log lines. The request travels as JSON on stdin, never on a command line.
    """
    document = {"settings": paths.confdir_args(), "type": request.type,
                "title": request.title, "parameters": request.parameters}
    try:
        proc = subprocess.run([*ruby, str(ral_script())], input=json.dumps(document),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ResourceError(f"puppet did not apply the resource within {timeout:g}s") from None
    except OSError as exc:
        raise ResourceError(f"cannot run {ruby[0]}: {exc.strerror}") from None
    result = _last_json_line(proc.stdout)
    if result is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ResourceError(f"puppet's RAL helper failed (exit {proc.returncode}): "
                            f"{' / '.join(detail) or 'no output'}")
    if result.get("error"):
        raise ResourceError(str(result["error"]))
    return result


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            return value if isinstance(value, dict) else None
    return None
