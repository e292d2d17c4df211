"""External agents: an executable plus its JSON DDL in an agents directory, in any language.

orch speaks the Choria external-agent protocol (``io.choria.mcorpc.external.v1``) so agents
written for Choria run unchanged; ``docs/external-agents.md`` is the author's guide. In short:

* **Layout** (in every directory of the ``agents_dir`` setting): ``<name>.json`` beside an
  executable ``<name>``; or both inside a directory ``<name>/``; or, for compiled agents,
  ``<name>.json`` beside a directory ``<name>/`` holding ``<name>-<goos>_<goarch>`` binaries.
* **Invocation**: ``<executable> <request file> <reply file> <protocol>`` with
  ``CHORIA_EXTERNAL_REQUEST``, ``CHORIA_EXTERNAL_REPLY``, ``CHORIA_EXTERNAL_PROTOCOL``,
  ``CHORIA_EXTERNAL_CONFIG`` and ``CHORIA_EXTERNAL_FACTS`` set. The agent reads the request
  JSON and writes ``{"statuscode": 0, "statusmsg": "OK", "data": {...}}`` to the reply file.
* **Activation**: when the agents are scanned, each is run once with the
  ``activation_request`` protocol and must answer ``{"activate": true}`` within 2 s.

Why child processes: Python threads cannot be killed, so an agent that hangs would hold a
worker forever (see :mod:`orch.core.runner`). A child in its own process group can be:
at the DDL timeout the whole group gets SIGTERM, then SIGKILL, and the caller an ``aborted``
reply. Output is capped, stderr goes to the daemon log, and every failure mode (crash,
non-zero exit, missing or unparsable reply) becomes an ``aborted`` reply saying what
happened, never an exception.

Limits can be tuned in the ``plugins.external`` settings section: ``max_reply_bytes``
(default 1 MiB), ``max_log_bytes`` (64 KiB of stdout and of stderr logged per call),
``activation_timeout`` (2 s) and ``kill_grace`` (1 s between SIGTERM and SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from orch.core import convert
from orch.core.agent import ActionMethod, ActionReply, ActionRequest, Agent
from orch.core.config import Settings
from orch.core.hookspecs import hookimpl
from orch.core.protocol import Status, valid_name
from orch.core.sections import setting
from orch.ddl.model import ActionDDL, AgentDDL, DDLError, load_ddl

log = logging.getLogger(__name__)

PROTOCOL_RPC_REQUEST = "io.choria.mcorpc.external.v1.rpc_request"
SCHEMA_RPC_REQUEST = "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json"
PROTOCOL_ACTIVATION = "io.choria.mcorpc.external.v1.activation_request"
SCHEMA_ACTIVATION = "https://choria.io/schemas/mcorpc/external/v1/activation_request.json"

ENV_REQUEST = "CHORIA_EXTERNAL_REQUEST"
ENV_REPLY = "CHORIA_EXTERNAL_REPLY"
ENV_PROTOCOL = "CHORIA_EXTERNAL_PROTOCOL"
ENV_CONFIG = "CHORIA_EXTERNAL_CONFIG"
ENV_FACTS = "CHORIA_EXTERNAL_FACTS"

#: The name of this plugin's settings section (``plugins.external``).
PLUGIN_NAME = "external"
MAX_REPLY_BYTES = 1024 * 1024
MAX_LOG_BYTES = 64 * 1024
#: Choria gives activation checks 2 seconds; so do we.
ACTIVATION_TIMEOUT = 2.0
KILL_GRACE = 1.0
#: Names of built-in agents an external agent may not replace (Choria has the same rule).
RESERVED_NAMES = frozenset({"rpcutil"})
#: Files in an agents directory that are never agents (Ruby agents and their DDLs, docs).
_NOT_AGENTS = (".json", ".ddl", ".rb", ".erb", ".md", ".txt", ".policy", ".yaml", ".yml")

#: How often a running agent's reply file size is checked (seconds).
_CHECK_INTERVAL = 0.1
#: Exit polling interval where pidfds are unavailable (not Linux).
_POLL_INTERVAL = 0.01
#: How long to keep reading output after the agent exited (a grandchild may hold the pipe).
_DRAIN_GRACE = 0.2
_READ_CHUNK = 65536


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ExternalSettings:
    """``plugins: {external: {…}}``: where external agents are and the limits of their calls.
    ``agents_dir`` was one of orch's own settings before plugins declared theirs, so the old
    top-level name still works."""

    agents_dir: list[str] = setting(
        list, convert.string_list,
        "Directories of external agents: an executable plus its JSON DDL, in any language "
        "(see [external-agents.md](external-agents.md)).", aliases=("agents_dir",))
    max_reply_bytes: int = setting(
        MAX_REPLY_BYTES, convert.positive(int),
        "Largest reply file an external agent may write (bytes); a bigger one aborts the call.")
    max_log_bytes: int = setting(
        MAX_LOG_BYTES, convert.positive(int),
        "Output of an external agent logged per call, of stdout and of stderr each (bytes).")
    activation_timeout: float = setting(
        ACTIVATION_TIMEOUT, convert.positive(float),
        "Seconds an external agent's activation check may take when the agents are scanned.")
    kill_grace: float = setting(
        KILL_GRACE, convert.positive(float),
        "Seconds between SIGTERM and SIGKILL for an external agent past its deadline.")


@dataclass(frozen=True)
class Limits:
    """Resource limits of external agent calls, from the ``plugins.external`` section."""

    max_reply_bytes: int = MAX_REPLY_BYTES
    max_log_bytes: int = MAX_LOG_BYTES
    activation_timeout: float = ACTIVATION_TIMEOUT
    kill_grace: float = KILL_GRACE

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Limits:
        """The limits of the (checked) ``external`` section."""
        if settings is None:
            return cls()
        section = settings.section(PLUGIN_NAME, ExternalSettings)
        return cls(section.max_reply_bytes, section.max_log_bytes, section.activation_timeout,
                   section.kill_grace)


# ----------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class Refusal:
    """A file in an agents directory that is not served, and why."""

    path: str
    reason: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class _Candidate:
    name: str
    ddl: AgentDDL
    ddl_path: Path
    executable: Path


def _go_platform() -> str:
    """``<goos>_<goarch>`` of this machine, as Choria names multi-arch agent binaries."""
    goos = {"linux": "linux", "darwin": "darwin", "win32": "windows", "cygwin": "windows"}.get(
        sys.platform, sys.platform.rstrip("0123456789"))
    machine = platform.machine().lower()
    goarch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
              "i386": "386", "i686": "386", "x86": "386", "armv7l": "arm", "armv6l": "arm",
              "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return f"{goos}_{goarch}"


def _executable_for(base: Path, name: str) -> Path | None:
    """Where the executable of agent ``name`` whose DDL is in ``base`` lives (or None).

    Choria's rule: ``base/name`` when it is a file, else the per-platform binary
    ``base/name/name-<goos>_<goarch>``.
    """
    direct = base / name
    if direct.is_file():
        return direct
    if direct.is_dir():
        binary = direct / f"{name}-{_go_platform()}"
        if binary.exists():
            return binary
    return None


def _read_ddl(path: Path) -> tuple[AgentDDL, Any]:
    """Load a DDL and also return its ``metadata.provider`` (which AgentDDL does not keep)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DDLError(f"{path}: cannot load DDL: {exc.strerror or exc}") from None
    ddl = load_ddl(path, text=text)
    raw = json.loads(text)  # load_ddl parsed it already, so this cannot fail
    return ddl, (raw.get("metadata") or {}).get("provider")


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _discover(directories: Iterable[str | os.PathLike[str]]
              ) -> tuple[list[_Candidate], list[Refusal]]:
    """Find well-formed agent candidates (layout, DDL, names) in directory order."""
    candidates: dict[str, _Candidate] = {}
    refusals: list[Refusal] = []

    def consider(name: str, ddl_path: Path, base: Path) -> None:
        try:
            ddl, provider = _read_ddl(ddl_path)
        except DDLError as exc:
            executable = _executable_for(base, name)
            if executable is not None:  # an agent with a broken DDL, not a stray JSON file
                refusals.append(Refusal(str(ddl_path), f"broken DDL: {exc}", name))
            else:
                log.debug("%s: not a DDL beside an executable, ignored: %s", ddl_path, exc)
            return
        executable = _executable_for(base, name)
        if executable is None:
            if provider == "external":
                refusals.append(Refusal(str(ddl_path), f"the DDL says provider 'external' but "
                                        f"there is no executable {base / name}", name))
            else:  # e.g. a Ruby agent's JSON DDL in a shared MCollective agent directory
                log.debug("%s: no executable %s beside it, not an external agent",
                          ddl_path, base / name)
            return
        problem = None
        if not valid_name(name):
            problem = (f"{name!r} is not a valid agent name (letters, digits, '.', '_' "
                       "and '-')")
        elif ddl.name != name:
            problem = (f"the DDL's metadata.name is {ddl.name!r} but the file is named "
                       f"{name!r}; they must match")
        elif provider not in (None, "", "external"):
            problem = (f"the DDL's metadata.provider is {provider!r}; an external agent "
                       "has 'external' or none")
        elif name in RESERVED_NAMES:
            problem = f"{name!r} is a built-in agent and cannot be replaced"
        elif not ddl.actions:
            problem = "the DDL declares no actions"
        if problem is not None:
            refusals.append(Refusal(str(ddl_path), problem, name))
            return
        if not _is_executable_file(executable):
            refusals.append(Refusal(str(executable), "not executable (chmod +x it)", name))
            return
        if name in candidates:
            refusals.append(Refusal(str(executable), f"name clash: agent {name!r} is already "
                                    f"provided by {candidates[name].executable}", name))
            return
        candidates[name] = _Candidate(name, ddl, ddl_path, executable)

    for directory in directories:
        # Absolute: the agent runs in its own working directory.
        root = Path(os.path.abspath(directory))
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except FileNotFoundError:
            refusals.append(Refusal(str(root), "agents directory does not exist"))
            continue
        except OSError as exc:
            refusals.append(Refusal(str(root), f"cannot read agents directory: "
                                    f"{exc.strerror or exc}"))
            continue
        names = {entry.name for entry in entries}
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "tmp":
                continue
            path = Path(entry.path)
            if entry.is_dir():
                nested = path / f"{entry.name}.json"
                if nested.is_file():
                    consider(entry.name, nested, path)
                continue  # else a multi-arch binary directory, or not an agent at all
            if entry.name.endswith(".json"):
                consider(entry.name[: -len(".json")], path, root)
                continue
            if entry.name.endswith(_NOT_AGENTS) or f"{entry.name}.json" in names:
                continue
            if _is_executable_file(path):
                hint = (f" (found the Ruby DDL {entry.name}.ddl; orch needs the JSON one, "
                        "e.g. from `choria plugin generate ddl`)"
                        if f"{entry.name}.ddl" in names else "")
                refusals.append(Refusal(str(path), f"missing DDL: expected "
                                        f"{root / (entry.name + '.json')} beside it{hint}",
                                        entry.name))
    return list(candidates.values()), refusals


def scan(
    directories: Iterable[str | os.PathLike[str]], settings: Settings | None = None
) -> tuple[list[type[Agent]], list[Refusal]]:
    """Find the external agents in ``directories`` and activation-check them.

    Returns one :class:`ExternalAgent` subclass per agent that is well-formed and agreed to
    activate, and a :class:`Refusal` for everything that looked like an agent but is not
    served. When two directories provide the same agent the first one wins (like
    ``$PATH``) and the later one is refused. ``settings`` supplies the limits and each
    agent's ``plugins.<name>`` section (its ``CHORIA_EXTERNAL_CONFIG``).
    """
    limits = Limits.from_settings(settings)
    candidates, refusals = _discover(directories)

    def check(candidate: _Candidate) -> str | None:
        try:
            return _activation_check(candidate, limits, settings)
        except Exception as exc:  # an orch bug must refuse one agent, not stop the scan
            log.exception("activation check of %s failed", candidate.executable)
            return f"activation check failed inside orch: {type(exc).__name__}: {exc}"

    if len(candidates) > 1:  # each check may take up to 2 s: run them side by side
        with ThreadPoolExecutor(max_workers=min(8, len(candidates)),
                                thread_name_prefix="orch-activation") as pool:
            verdicts = list(pool.map(check, candidates))
    else:
        verdicts = [check(candidate) for candidate in candidates]
    agents: list[type[Agent]] = []
    for candidate, problem in zip(candidates, verdicts, strict=True):
        if problem is None:
            agents.append(_agent_class(candidate))
        else:
            refusals.append(Refusal(str(candidate.executable), problem, candidate.name))
    return agents, refusals


def _activation_check(candidate: _Candidate, limits: Limits,
                      settings: Settings | None) -> str | None:
    """Run the activation protocol; return why the agent is refused, or None to load it."""
    request = {"$schema": SCHEMA_ACTIVATION, "protocol": PROTOCOL_ACTIVATION,
               "agent": candidate.name}
    config = settings.plugin(candidate.name) if settings is not None else {}
    outcome = _call(candidate.executable, PROTOCOL_ACTIVATION, request,
                    deadline=time.monotonic() + limits.activation_timeout, limits=limits,
                    facts={}, config=config)
    _log_output(outcome, f"agent={candidate.name} activation")
    failure = _process_failure(outcome, limits)
    if failure is not None:
        return f"activation check {failure}"
    if outcome.returncode != 0:
        return f"activation check exited with status {outcome.returncode}" \
               f"{_tail(outcome.stderr)}"
    if outcome.reply is None:
        return f"activation check wrote no reply{_tail(outcome.stderr)}"
    try:
        answer = json.loads(outcome.reply)
    except ValueError as exc:
        return f"activation reply is not valid JSON: {exc}"
    activate = answer.get("activate") if isinstance(answer, dict) else None
    if not isinstance(activate, bool):
        return 'activation reply must be {"activate": true} or {"activate": false}'
    if not activate:
        return "the agent declined to activate on this node (activate: false)"
    return None


# ----------------------------------------------------------------------------- the agent


class ExternalAgent(Agent):
    """Base of the classes :func:`scan` builds, one per external agent.

    Every action the DDL declares runs the executable; the server and client see an
    ordinary agent with a DDL.
    """

    #: The agent's executable and DDL file, set on each generated subclass.
    executable: ClassVar[Path]
    ddl_path: ClassVar[Path]
    _external_ddl: ClassVar[AgentDDL]
    #: Extra seconds the server's deadline may give this agent beyond the DDL timeout: the
    #: agent enforces the timeout itself (killing its process group), and its own
    #: "timed out" reply is more useful than the runner's generic one.
    deadline_grace: ClassVar[float] = 1.0

    @classmethod
    def ddl(cls) -> AgentDDL:
        return cls._external_ddl

    @classmethod
    def actions(cls) -> dict[str, ActionMethod]:
        return dict.fromkeys(cls._external_ddl.actions, ExternalAgent.invoke)

    def invoke(self, request: ActionRequest, reply: ActionReply) -> None:
        """Run the executable for ``request`` and fill ``reply``; never raises."""
        try:
            result = self._invoke(request)
        except Exception as exc:  # an orch bug: still answer, and keep the traceback
            log.exception("agent=%s action=%s request=%s external call failed", self.name,
                          request.action, request.request_id)
            result = ActionReply(statuscode=Status.ABORTED, statusmsg=(
                f"{self.name}.{request.action} could not be run: "
                f"{type(exc).__name__}: {exc}"))
        reply.data.update(result.data)
        reply.statuscode, reply.statusmsg = result.statuscode, result.statusmsg

    def _invoke(self, request: ActionRequest) -> ActionReply:
        ddl = self.ddl()
        settings = _node_settings(self.node)
        limits = Limits.from_settings(settings)
        started = time.monotonic()
        deadline = started + ddl.timeout
        server_deadline = getattr(request, "deadline", None)
        if isinstance(server_deadline, int | float) and server_deadline < deadline:
            deadline = server_deadline  # the request's TTL runs out first
        msgtime = getattr(request, "time", None)
        ttl = getattr(request, "ttl", None)
        payload = {
            "$schema": SCHEMA_RPC_REQUEST,
            "protocol": PROTOCOL_RPC_REQUEST,
            "agent": self.name,
            "action": request.action,
            "requestid": request.request_id,
            "senderid": request.sender,
            "callerid": request.caller,
            "collective": getattr(self.node, "collective", ""),
            "ttl": int(ttl if isinstance(ttl, int | float) else
                       settings.ttl if settings is not None else 60),
            "msgtime": int(msgtime if isinstance(msgtime, int | float) else time.time()),
            "data": dict(request.data),
        }
        outcome = _call(self.executable, PROTOCOL_RPC_REQUEST, payload, deadline=deadline,
                        limits=limits, facts=_node_facts(self.node),
                        config=settings.plugin(self.name) if settings is not None else {})
        context = f"agent={self.name} action={request.action} request={request.request_id}"
        _log_output(outcome, context)
        reply = _rpc_reply(outcome, f"{self.name}.{request.action}", deadline - started,
                           limits, ddl.action(request.action))
        level = logging.DEBUG if reply.statuscode == Status.OK else logging.WARNING
        log.log(level, "%s finished in %.3fs: %s %s", context, outcome.elapsed,
                reply.statuscode.label, reply.statusmsg)
        return reply


def _node_settings(node: Any) -> Settings | None:
    settings = getattr(node, "settings", None)
    return settings if isinstance(settings, Settings) else None


def _node_facts(node: Any) -> Mapping[str, Any]:
    try:
        return dict(node.view().facts)
    except Exception:  # a node context without facts still runs agents
        return {}


def _agent_class(candidate: _Candidate) -> type[ExternalAgent]:
    """One subclass per agent, so that each has its own name, DDL and executable."""
    namespace = {
        "name": candidate.name,
        "executable": candidate.executable,
        "ddl_path": candidate.ddl_path,
        "_external_ddl": candidate.ddl,
        "__module__": __name__,
        "__doc__": f"External agent {candidate.name} ({candidate.executable}).",
    }
    return type(f"ExternalAgent[{candidate.name}]", (ExternalAgent,), namespace)


# ----------------------------------------------------------------------------- one call


@dataclass
class _Capture:
    """Up to ``limit`` bytes of one output stream; the rest is read and counted."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(len(chunk) - max(room, 0), 0)


@dataclass
class _Outcome:
    """What running the executable once produced."""

    stdout: _Capture
    stderr: _Capture
    returncode: int | None = None
    spawn_error: str | None = None
    timed_out: bool = False
    reply_too_large: bool = False
    reply: bytes | None = None
    reply_error: str | None = None
    elapsed: float = 0.0


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


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with open(fd, "wb") as handle:
        handle.write(data)


def _call(executable: Path, protocol: str, payload: Mapping[str, Any], *, deadline: float,
          limits: Limits, facts: Mapping[str, Any], config: Mapping[str, Any]) -> _Outcome:
    """Run ``executable`` once under the protocol, in a private directory removed after."""
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


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once ``proc`` has exited, without reaping it where the OS allows.

    An unreaped (zombie) leader keeps its process-group id reserved, so the group can
    still be signalled without any risk of hitting a recycled id.
    """
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return proc.poll() is not None
    try:
        return waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class _Supervisor:
    """Watches one child: reads its output, enforces the deadline and the reply cap."""

    def __init__(self, proc: subprocess.Popen[bytes], reply_path: Path, limits: Limits,
                 outcome: _Outcome) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.reply_path, self.limits, self.outcome = proc, reply_path, limits, outcome
        self.selector = selectors.DefaultSelector()
        self.captures = {proc.stdout.fileno(): outcome.stdout,
                         proc.stderr.fileno(): outcome.stderr}
        for fd in self.captures:
            self.selector.register(fd, selectors.EVENT_READ)
        self.pidfd = _open_pidfd(proc.pid)
        if self.pidfd is not None:
            self.selector.register(self.pidfd, selectors.EVENT_READ)
        self.exited = False
        self._checked = time.monotonic()

    def __enter__(self) -> _Supervisor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Whatever happened, leave no process and no descriptor behind."""
        if self.proc.returncode is None:
            self._signal_group(signal.SIGKILL)
            try:
                self.outcome.returncode = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("external agent process %d did not die after SIGKILL",
                          self.proc.pid)
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def run(self, deadline: float) -> None:
        if not self._pump(deadline):
            self.outcome.timed_out = not self.outcome.reply_too_large
            self._signal_group(signal.SIGTERM)
            self._pump(time.monotonic() + self.limits.kill_grace)
        # The leader is gone (or ignored SIGTERM) but is not reaped yet, so the group id
        # is still ours: kill whatever it left behind, then reap.
        self._signal_group(signal.SIGKILL)
        self._drain(time.monotonic() + _DRAIN_GRACE)
        try:
            self.outcome.returncode = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # stuck in the kernel; __exit__ tries again
            log.error("external agent process %d did not die after SIGKILL", self.proc.pid)

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except OSError:
            chunk = b""
        if chunk:
            self.captures[fd].feed(chunk)
        else:
            self.selector.unregister(fd)

    def _reply_too_large(self) -> bool:
        now = time.monotonic()
        if now - self._checked < _CHECK_INTERVAL:
            return False
        self._checked = now
        try:
            size = self.reply_path.stat().st_size
        except OSError:
            return False
        return size > self.limits.max_reply_bytes

    def _pump(self, until: float) -> bool:
        """Read output until the leader exits (True) or ``until`` passes (False).

        Also stops early (False) when the reply file grows past the cap.
        """
        while not self.exited:
            now = time.monotonic()
            if now >= until:
                return False
            interval = _CHECK_INTERVAL if self.pidfd is not None else _POLL_INTERVAL
            for key, _ in self.selector.select(min(until - now, interval)):
                if key.fd == self.pidfd:
                    self.exited = True
                    self.selector.unregister(key.fd)
                else:
                    self._read(key.fd)
            if not self.exited and self.pidfd is None:
                self.exited = _has_exited(self.proc)
            if not self.outcome.reply_too_large and self._reply_too_large():
                self.outcome.reply_too_large = True
                return False
        return True

    def _drain(self, until: float) -> None:
        """Collect what is left in the pipes; a writer that escaped the process group
        (setsid) may keep them open, so this gives up at ``until``."""
        if self.pidfd is not None and self.pidfd in self.selector.get_map():
            self.selector.unregister(self.pidfd)
        while self.selector.get_map():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in self.selector.select(remaining):
                self._read(key.fd)


# ----------------------------------------------------------------------------- results


def _tail(capture: _Capture, limit: int = 300) -> str:
    """``": <last stderr line>"``, the most useful hint a failing agent usually leaves."""
    for line in reversed(bytes(capture.data).decode("utf-8", "replace").splitlines()):
        if line.strip():
            text = line.strip()
            return f": {text[:limit]}{'…' if len(text) > limit else ''}"
    return ""


def _process_failure(outcome: _Outcome, limits: Limits, budget: float | None = None
                     ) -> str | None:
    """The failures that leave no reply to look at: start, timeout, size, signal."""
    if outcome.spawn_error is not None:
        return outcome.spawn_error
    if outcome.timed_out:
        seconds = budget if budget is not None else outcome.elapsed
        return f"timed out after {round(seconds, 1):g}s; its process group was killed"
    if outcome.reply_too_large:
        return (f"produced output too large: the reply file exceeded "
                f"{limits.max_reply_bytes} bytes")
    if outcome.returncode is not None and outcome.returncode < 0:
        try:
            name = signal.Signals(-outcome.returncode).name
        except ValueError:
            name = f"signal {-outcome.returncode}"
        return f"was killed by {name}{_tail(outcome.stderr)}"
    if outcome.reply_error is not None:
        return outcome.reply_error
    return None


def _rpc_reply(outcome: _Outcome, what: str, budget: float, limits: Limits,
               action: ActionDDL | None) -> ActionReply:
    """Map a finished call onto orch's reply: the agent's own, or ``aborted`` and why."""
    failure = _process_failure(outcome, limits, budget)
    if failure is not None:
        return ActionReply(statuscode=Status.ABORTED, statusmsg=f"{what} {failure}")
    parsed: Mapping[str, Any] | None = None
    problem = None
    if outcome.reply is None:
        problem = f"wrote no reply to ${ENV_REPLY}"
    else:
        try:
            value = json.loads(outcome.reply)
        except ValueError as exc:
            problem = f"wrote a reply that is not valid JSON ({exc})"
        else:
            if isinstance(value, dict):
                parsed = value
            else:
                problem = f"wrote a JSON {type(value).__name__} as its reply, not an object"
    if parsed is not None:
        reply, problem = _parse_reply(parsed)
    else:
        reply = ActionReply()
    if outcome.returncode:
        # Non-zero exit fails the call even with a reply (as in Choria); the agent's own
        # message, when it wrote one, says more than its exit status.
        hint = (f": {reply.statusmsg}" if parsed is not None and problem is None
                and reply.statuscode != Status.OK else _tail(outcome.stderr))
        status = reply.statuscode if reply.statuscode != Status.OK else Status.ABORTED
        reply.fail(f"{what} exited with status {outcome.returncode}{hint}", status)
        return reply
    if problem is not None:
        return ActionReply(statuscode=Status.ABORTED,
                           statusmsg=f"{what} {problem}{_tail(outcome.stderr)}")
    if action is not None:  # Choria fills in the DDL's output defaults too
        for name, output in action.outputs.items():
            if output.default is not None and name not in reply.data:
                reply.data[name] = output.default
    return reply


def _parse_reply(value: Mapping[str, Any]) -> tuple[ActionReply, str | None]:
    """``statuscode``/``statusmsg``/``data`` → ActionReply, or what is wrong with them."""
    code = value.get("statuscode", 0)
    try:
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError(code)
        status = Status(code)
    except ValueError:
        return ActionReply(), f"wrote a reply with an invalid statuscode {code!r} (0-5)"
    message = value.get("statusmsg")
    if message is None or message == "":
        message = "OK" if status == Status.OK else status.label
    if not isinstance(message, str):
        return ActionReply(), "wrote a reply whose statusmsg is not a string"
    data = value.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return ActionReply(), f"wrote a reply whose data is a {type(data).__name__}, " \
                              "not an object"
    return ActionReply(data=dict(data), statuscode=status, statusmsg=message), None


def _log_output(outcome: _Outcome, context: str) -> None:
    """The agent's stdout (INFO) and stderr (WARNING) lines, in the daemon log."""
    for stream, capture, level in (("stdout", outcome.stdout, logging.INFO),
                                   ("stderr", outcome.stderr, logging.WARNING)):
        if not log.isEnabledFor(level):
            continue
        for line in bytes(capture.data).decode("utf-8", "replace").splitlines():
            if line.strip():
                log.log(level, "%s %s: %s", context, stream, line)
        if capture.dropped:
            log.log(level, "%s %s: … %d more bytes not logged (limit %d)", context, stream,
                    capture.dropped, capture.limit)


# ----------------------------------------------------------------------------- plugin


_cache_lock = threading.Lock()
_cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[type[Agent]]]] = {}


def _fingerprint(directories: Iterable[str]) -> tuple[Any, ...]:
    """What the scan depends on: every entry (and nested entry) with mtime, size, mode.

    Cheap (one ``scandir`` per directory) and catches edits in place, which a directory's
    own mtime does not.
    """
    parts: list[Any] = []

    def entries(path: str, depth: int) -> None:
        try:
            listing = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            parts.append((path, "error", exc.errno))
            return
        for entry in listing:
            try:
                info = entry.stat()
            except OSError:
                continue
            parts.append((entry.path, info.st_mtime_ns, info.st_size, info.st_mode,
                          info.st_ino))
            if depth and stat.S_ISDIR(info.st_mode):
                entries(entry.path, depth - 1)

    for directory in directories:
        entries(directory, 1)
    return tuple(parts)


def rescan() -> None:
    """Forget every cached scan: the next ``orch_agents`` call re-reads the directories and
    re-runs the activation checks (the server calls this on SIGHUP)."""
    with _cache_lock:
        _cache.clear()


def cached_scan(settings: Settings) -> list[type[Agent]]:
    """:func:`scan` of ``settings.agents_dir``, reused while nothing on disk changed.

    The client asks for agents (for their DDLs) on every call; re-running every activation
    check each time would cost up to seconds. Loaded and refused agents are logged when a
    scan actually runs.
    """
    directories = tuple(str(d) for d in settings.section(PLUGIN_NAME,
                                                          ExternalSettings).agents_dir)
    if not directories:
        return []
    key = (directories, json.dumps(settings.plugins, sort_keys=True, default=str))
    with _cache_lock:
        fingerprint = _fingerprint(directories)
        cached = _cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return list(cached[1])
        agents, refusals = scan(directories, settings)
        for refusal in refusals:
            log.warning("external agent refused: %s: %s", refusal.path, refusal.reason)
        for agent in agents:
            ddl = agent.ddl()
            log.info("external agent %s loaded from %s (actions: %s; timeout %gs)",
                     agent.name, getattr(agent, "executable", "?"),
                     ", ".join(sorted(ddl.actions)), ddl.timeout)
        _cache[key] = (fingerprint, agents)
        return list(agents)


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``external`` section."""
    return {PLUGIN_NAME: ExternalSettings}


@hookimpl
def orch_agents(settings: Settings) -> Iterable[type[Agent]]:
    """The external agents found in ``settings.agents_dir``."""
    return cached_scan(settings)


@hookimpl
def orch_reload(settings: Settings) -> None:
    """SIGHUP: forget the scans, so the daemon's next look re-reads the directories and
    re-runs the activation checks (a dependency may have been installed meanwhile)."""
    rescan()
