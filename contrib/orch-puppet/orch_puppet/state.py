"""Reading (and, for enable/disable, writing) the files Puppet keeps about its runs.

These are Puppet's own files, read the way Puppet reads them, so that ``orch puppet`` and
``puppet agent`` always agree:

* ``agent_catalog_run.lock`` exists only while a run is going and holds the PID of the
  ``puppet`` process; a lock naming a dead (or reused, non-puppet) PID is stale;
* ``agent_disabled.lock`` holds ``{"disabled_message": "..."}``; its presence alone means
  disabled (``puppet agent --disable`` / ``--enable`` create and delete it);
* ``last_run_summary.yaml`` (plain YAML) and ``last_run_report.yaml`` (YAML with Ruby
  object tags);
* ``classes.txt`` and ``resources.txt`` (one class, or ``type[title]``, per line);
* the daemon's pidfile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

#: What Puppet itself says when a lock file has no message.
NO_REASON = "reason not specified"
#: Reports can hold thousands of log lines; the last ones are the interesting ones.
MAX_LOGS = 500


# -- processes -----------------------------------------------------------------------------


def read_pid(path: Path) -> int | None:
    """The PID in a lock or pid file, None when absent, empty or not a number."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_puppet_process(pid: int) -> bool:
    """True when ``pid`` is alive and is a puppet process, by Puppet's own rule
    (``Puppet::Util::Pidlock``): its command name mentions puppet, or it is Ruby running
    something that mentions puppet.

    A PID reused by an unrelated process after a crash must not look like a run in
    progress. Without ``/proc`` (not Linux) liveness alone decides.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return False
    if not Path("/proc/self").exists():
        return True
    try:
        comm = Path(f"/proc/{pid}/comm").read_bytes()
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False  # exited since the liveness check
    except OSError:
        return True  # alive but unreadable (hidepid): trust the lock, as Puppet would
    return b"puppet" in comm or (b"ruby" in comm and b"puppet" in args)


def live_puppet_pid(path: Path) -> int | None:
    """The PID in ``path`` if it names a live puppet process, else None."""
    pid = read_pid(path)
    return pid if pid is not None and is_puppet_process(pid) else None


# -- enable / disable ------------------------------------------------------------------------


def read_disabled(path: Path) -> str | None:
    """The disable message when ``agent_disabled.lock`` exists, else None (enabled)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Unreadable but present: Puppet treats the agent as disabled.
        return f"{NO_REASON} (cannot read {path}: {exc.strerror})"
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return text.strip() or NO_REASON
    message = data.get("disabled_message") if isinstance(data, dict) else None
    return str(message) if message else NO_REASON


def write_disabled(path: Path, message: str) -> None:
    """Create ``agent_disabled.lock`` atomically, in the format ``puppet agent --disable``
    writes, so Puppet and orch read the same message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".orch-disable-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"disabled_message": message}, handle)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def remove_disabled(path: Path) -> bool:
    """Delete ``agent_disabled.lock``; False if it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# -- run summary and report ----------------------------------------------------------------


class _RubyTolerantLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that reads Ruby-tagged nodes (``!ruby/object:Puppet::...``) as plain data."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_RubyTolerantLoader.add_multi_constructor("!ruby/", _untagged)
_RubyTolerantLoader.add_multi_constructor("tag:yaml.org,2002:ruby/", _untagged)


def load_yaml(path: Path) -> Any:
    """Parse a Puppet YAML file (Ruby tags become plain mappings); None when absent."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    return yaml.load(text, Loader=_RubyTolerantLoader)


def read_summary(path: Path) -> dict[str, Any]:
    """``last_run_summary.yaml`` as a mapping; empty when there is none (never ran)."""
    try:
        data = load_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _number(mapping: Any, key: str) -> float:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _count(mapping: Any, key: str) -> int:
    return int(_number(mapping, key))


def last_run(summary: Mapping[str, Any]) -> int:
    """Epoch seconds of the last completed run (``time.last_run``), 0 when never."""
    return _count(summary.get("time"), "last_run")


@dataclass(frozen=True)
class RunOutcome:
    """How the last run ended: ``status`` is ``changed``, ``unchanged``, ``failed`` or ``""``
    (never ran); ``failure`` says why a failed run failed, ``""`` otherwise."""

    status: str
    failure: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"


#: The outcome of a node that never completed a run.
NEVER_RAN = RunOutcome("")
#: The log lines that say best why a run got no catalog, most telling first.
_CATALOG_ERRORS = ("Could not retrieve catalog from remote server", "Could not retrieve catalog")
MAX_FAILURE = 300


def _first_error(report: Mapping[str, Any] | None) -> str:
    if not report:
        return ""
    errors = [line["message"] for line in report_logs(report)
              if line["level"] in ("err", "alert", "emerg", "crit")]
    for prefix in _CATALOG_ERRORS:
        for message in errors:
            if message.startswith(prefix):
                return message[:MAX_FAILURE]
    return errors[0][:MAX_FAILURE] if errors else ""


def run_outcome(summary: Mapping[str, Any],
                report: Mapping[str, Any] | None = None) -> RunOutcome:
    """The last run's outcome from ``last_run_summary.yaml`` (and the report when read).

    The summary alone tells a failed run: a run that got no catalog (server unreachable,
    compile failed) writes an empty ``version.config`` and zero counts, which would
    otherwise read as "0 resources, 0 failed"; failed resources or restarts count too. The
    report adds its own ``status``, the first error line, and ``cached_catalog_status:
    on_failure`` (the compile failed and the previous catalog was applied).
    """
    if not summary:
        return RunOutcome("")
    resources = summary.get("resources")
    version = summary.get("version")
    reasons = []
    if not isinstance(version, dict) or version.get("config") in (None, ""):
        reasons.append("no catalog")
    for key, what in (("failed", "failed resource"), ("failed_to_restart", "failed restart")):
        count = _count(resources, key)
        if count:
            reasons.append(f"{count} {what}{'s' if count != 1 else ''}")
    if report and report.get("cached_catalog_status") == "on_failure":
        reasons.append("the compile failed and the cached catalog was applied")
    report_status = str(report.get("status") or "") if report else ""
    if reasons or report_status == "failed":
        detail = _first_error(report)
        reason = "; ".join(reasons) or "the report says failed"
        return RunOutcome("failed", f"{reason}: {detail}" if detail else reason)
    if report_status:
        return RunOutcome(report_status)
    changed = _count(resources, "changed") or _count(summary.get("changes"), "total")
    return RunOutcome("changed" if changed else "unchanged")


@dataclass(frozen=True)
class RunSummary:
    """What ``last_run_summary`` reports, computed from the summary (and report)."""

    data: dict[str, Any]

    @classmethod
    def build(cls, summary: Mapping[str, Any], now: float,
              report: Mapping[str, Any] | None = None,
              types: Mapping[str, int] | None = None) -> RunSummary:
        resources = summary.get("resources") or {}
        times = summary.get("time") or {}
        version = summary.get("version") or {}
        lastrun = last_run(summary)
        config = version.get("config") if isinstance(version, dict) else None
        outcome = run_outcome(summary, report)
        data: dict[str, Any] = {
            "out_of_sync_resources": _count(resources, "out_of_sync"),
            "failed_resources": _count(resources, "failed"),
            "corrected_resources": _count(resources, "corrective_change"),
            "changed_resources": _count(resources, "changed"),
            "total_resources": _count(resources, "total"),
            "config_retrieval_time": round(_number(times, "config_retrieval"), 3),
            "total_time": round(_number(times, "total"), 3),
            "config_version": "" if config is None else str(config),
            "lastrun": lastrun,
            "since_lastrun": int(now - lastrun) if lastrun else None,
            "type_distribution": dict(types or {}),
            "summary": dict(summary),
            "logs": report_logs(report) if report else [],
            "run_status": outcome.status,
            "run_failure": outcome.failure,
            "cached_catalog_status": str(report.get("cached_catalog_status", ""))
            if report else "",
        }
        return cls(data)


def report_logs(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The report's log lines (level, source, message, time): the last :data:`MAX_LOGS`."""
    logs = report.get("logs")
    if not isinstance(logs, list):
        return []
    out = []
    for entry in logs[-MAX_LOGS:]:
        if isinstance(entry, dict):
            out.append({key: str(entry.get(key, "")) for key in
                        ("level", "source", "message", "time")})
    return out


def read_report(path: Path) -> dict[str, Any] | None:
    """``last_run_report.yaml`` as plain data, or None (absent or unreadable, logged)."""
    try:
        data = load_yaml(path)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


# -- classes and resources -----------------------------------------------------------------


def read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def managed_resources(path: Path) -> set[str]:
    """``type[title]`` of every resource in the last catalog (type lower-cased)."""
    out = set()
    for line in read_lines(path):
        type_name, bracket, rest = line.partition("[")
        if bracket and rest.endswith("]"):
            out.add(f"{type_name.lower()}[{rest[:-1]}]")
    return out


def type_distribution(path: Path) -> dict[str, int]:
    """How many resources of each type the last catalog managed (from ``resources.txt``)."""
    counts: Counter[str] = Counter()
    for resource in managed_resources(path):
        counts[resource.partition("[")[0]] += 1
    return dict(sorted(counts.items()))


# -- status --------------------------------------------------------------------------------


def describe_age(seconds: float) -> str:
    """``2 minutes 12 seconds``: how MCollective's puppet agent words the time since a run."""
    seconds = max(int(seconds), 0)
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    if seconds or not parts:
        parts.append(f"{seconds} second{'s' if seconds != 1 else ''}")
    return " ".join(parts[:2])


def status_message(status: str, lastrun: int, now: float, disable_message: str,
                   outcome: RunOutcome | None = None) -> str:
    """mco's wording (``Currently idling; last completed run 2 minutes ago``), with a
    failed last run said as such: a run without a catalog completed nothing."""
    if status == NOT_INSTALLED:
        return "Puppet is not installed on this node"
    text = f"Currently {status}"
    if status == "disabled" and disable_message:
        text += f" ({disable_message})"
    if outcome is not None and outcome.failed and lastrun:
        return (f"{text}; last run {describe_age(now - lastrun)} ago FAILED "
                f"({outcome.failure})")
    if lastrun:
        return f"{text}; last completed run {describe_age(now - lastrun)} ago"
    return f"{text}; never completed a run"


#: ``status`` of a node where no puppet command was found.
NOT_INSTALLED = "not installed"


def now() -> float:
    return time.time()
