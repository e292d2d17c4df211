"""Simulated Puppet nodes for the unit tests, the figures and the 1,000-node status run.

A simulated node is a directory laid out like Puppet's (``var/state``, ``var/public``,
``run``) that orch-puppet finds through its path overrides with ``{identity}`` in them, and
a fake ``puppet`` executable that behaves like ``puppet agent --onetime`` where it matters:
it refuses when disabled or when a run holds the lock, holds ``agent_catalog_run.lock``
with its own PID while it "applies" (its command line contains "puppet", as Puppet's own
lock check expects), then writes ``last_run_summary.yaml``, ``classes.txt`` and
``resources.txt``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

FAKE_PUPPET = r'''#!{python}
"""A fake `puppet agent --onetime` for orch-puppet's tests (see tests/fakepuppet.py)."""
import json, os, sys, time
args = sys.argv[1:]
if not args or args[0] != "agent":
    print("fake puppet: only `agent` is simulated", file=sys.stderr)
    sys.exit(64)
confdir = args[args.index("--confdir") + 1]
root = os.path.dirname(confdir)
state = os.path.join(root, "var", "state")
public = os.path.join(root, "var", "public")
os.makedirs(state, exist_ok=True)
os.makedirs(public, exist_ok=True)
with open(os.path.join(root, "argv.log"), "a") as log:
    log.write(json.dumps(args) + "\n")
if os.path.exists(os.path.join(state, "agent_disabled.lock")):
    print("Notice: Skipping run of Puppet configuration client; administratively disabled")
    sys.exit(1)
lock = os.path.join(state, "agent_catalog_run.lock")
try:
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
except FileExistsError:
    print("Notice: Run of Puppet configuration client already in progress; skipping")
    sys.exit(1)
os.write(fd, str(os.getpid()).encode())
os.close(fd)
try:
    seconds = float(open(os.path.join(root, "run_seconds")).read())
except OSError:
    seconds = 0.5
started = time.time()
time.sleep(seconds)
summary = {
    "version": {"config": int(started), "puppet": "7.23.0"},
    "application": {"run_mode": "agent", "initial_environment": "production",
                    "converged_environment": "production"},
    "resources": {"changed": 1, "corrective_change": 0, "failed": 0, "failed_to_restart": 0,
                  "out_of_sync": 1, "restarted": 0, "scheduled": 0, "skipped": 0,
                  "total": 7},
    "time": {"config_retrieval": 0.2, "total": round(time.time() - started, 3),
             "last_run": int(time.time())},
    "changes": {"total": 1},
    "events": {"failure": 0, "success": 1, "total": 1},
}
if os.path.exists(os.path.join(root, "fail_run")):
    # What Puppet writes when it gets no catalog (server unreachable): no config
    # version, every count 0, no config_retrieval time.
    summary["version"]["config"] = None
    summary["resources"] = {key: 0 for key in summary["resources"]}
    summary["changes"] = {"total": 0}
    summary["events"] = {"failure": 0, "success": 0, "total": 0}
    del summary["time"]["config_retrieval"]
with open(os.path.join(public, "last_run_summary.yaml"), "w") as out:
    json.dump(summary, out)  # JSON is YAML
with open(os.path.join(state, "classes.txt"), "w") as out:
    out.write("settings\ndefault\nrole::fake\n")
with open(os.path.join(state, "resources.txt"), "w") as out:
    out.write("file[/tmp/a]\nFile[/tmp/b]\nexec[true]\n")
os.unlink(lock)
sys.exit(2)
'''


def install_fake_puppet(directory: Path) -> Path:
    """Write the fake ``puppet`` executable into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fake-puppet"
    path.write_text(FAKE_PUPPET.replace("{python}", sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def puppet_like_process(directory: Path, body: str = "import time; time.sleep(300)",
                        **popen: Any) -> subprocess.Popen[bytes]:
    """A process Puppet's lock check accepts as puppet (its command name says so): what a
    simulated node's run lock or daemon pidfile points at."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "puppet-sim"
    if not script.exists():
        script.write_text(f"#!{sys.executable}\nimport sys\nexec(sys.argv[1])\n")
        script.chmod(0o755)
    proc = subprocess.Popen([str(script), body], **popen)
    # With vfork the parent resumes inside the child's execve, a moment before the kernel
    # renames the child: wait (bounded) until its command name says puppet.
    comm = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + 10
    while comm.exists() and b"puppet" not in comm.read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            break
        time.sleep(0.001)
    return proc


def plugin_section(root: Path, fake_bin: Path | None = None, **extra: Any) -> dict[str, Any]:
    """``plugins.puppet`` for simulated nodes under ``root/<identity>``."""
    section: dict[str, Any] = {
        "config_print": False,
        "confdir": str(root / "{identity}" / "conf"),
        "vardir": str(root / "{identity}" / "var"),
        "rundir": str(root / "{identity}" / "run"),
        "logdir": str(root / "{identity}" / "log"),
    }
    if fake_bin is not None:
        section["puppet_bin"] = str(fake_bin)
    section.update(extra)
    return section


def summary_document(lastrun: int, *, total: int = 10, changed: int = 0, failed: int = 0,
                     out_of_sync: int = 0, total_time: float = 3.0,
                     config_retrieval: float = 0.5, config: int | None = None) -> dict[str, Any]:
    return {
        "version": {"config": config if config is not None else lastrun, "puppet": "7.23.0"},
        "application": {"run_mode": "agent", "initial_environment": "production",
                        "converged_environment": "production"},
        "resources": {"changed": changed, "corrective_change": 0, "failed": failed,
                      "failed_to_restart": 0, "out_of_sync": out_of_sync, "restarted": 0,
                      "scheduled": 0, "skipped": 0, "total": total},
        "time": {"config_retrieval": config_retrieval, "total": total_time,
                 "last_run": lastrun},
        "changes": {"total": changed},
        "events": {"failure": failed, "success": changed, "total": changed + failed},
    }


def make_node(root: Path, identity: str, *, summary: dict[str, Any] | None = None,
              disabled: str | None = None, applying_pid: int | None = None,
              daemon_pid: int | None = None, classes: Iterable[str] = (),
              resources: Iterable[str] = (), run_seconds: float | None = None,
              fail_runs: bool = False) -> Path:
    """Lay out one simulated node's Puppet state; return its directory."""
    node = root / identity
    state = node / "var" / "state"
    for sub in (node / "conf", state, node / "var" / "public", node / "run", node / "log"):
        sub.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (node / "var" / "public" / "last_run_summary.yaml").write_text(
            yaml.safe_dump(summary))
    if disabled is not None:
        (state / "agent_disabled.lock").write_text(json.dumps({"disabled_message": disabled}))
    if applying_pid is not None:
        (state / "agent_catalog_run.lock").write_text(str(applying_pid))
    if daemon_pid is not None:
        (node / "run" / "agent.pid").write_text(str(daemon_pid))
    if classes:
        (state / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    if resources:
        (state / "resources.txt").write_text("".join(f"{r}\n" for r in resources))
    if run_seconds is not None:
        (node / "run_seconds").write_text(str(run_seconds))
    if fail_runs:
        (node / "fail_run").write_text("no catalog\n")
    return node


def argv_log(root: Path, identity: str) -> list[list[str]]:
    """Every command line the fake puppet was started with on ``identity``."""
    path = root / identity / "argv.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# A real last_run_summary.yaml of an agent run (Puppet 7.23.0, Debian 12).
REAL_SUMMARY = """\
---
version:
  config: 1795676793
  puppet: 7.23.0
application:
  run_mode: agent
  initial_environment: production
  converged_environment: production
resources:
  changed: 2
  corrective_change: 1
  failed: 0
  failed_to_restart: 0
  out_of_sync: 2
  restarted: 0
  scheduled: 0
  skipped: 0
  total: 11
time:
  catalog_application: 2.0299715090000063
  config_retrieval: 0.2539369199998873
  exec: 2.01432336
  total: 3.590866684
  last_run: 1795676796
changes:
  total: 2
events:
  failure: 0
  success: 2
  total: 2
"""

# The head of a real last_run_report.yaml: Ruby object tags, logs, resource statuses.
REAL_REPORT = """\
--- !ruby/object:Puppet::Transaction::Report
host: p1.localhost
time: '2026-11-26T07:06:32.509882895+00:00'
configuration_version: 1795676793
report_format: 12
puppet_version: 7.23.0
status: changed
transaction_completed: true
noop: false
environment: production
logs:
- level: info
  message: Using environment 'production'
  source: Puppet
  tags:
  - info
  time: '2026-11-26T07:06:33.171253345+00:00'
  file:
  line:
- level: notice
  message: executed successfully (corrective)
  source: "/Stage[main]/Role::Web/Exec[role::web slow step]/returns"
  tags:
  - notice
  - exec
  time: '2026-11-26T07:06:34.100000000+00:00'
  file: "/etc/puppet/code/environments/production/modules/role/manifests/web.pp"
  line: 7
resource_statuses:
  Exec[role::web slow step]: !ruby/object:Puppet::Resource::Status
    title: role::web slow step
    changed: true
    events:
    - !ruby/object:Puppet::Transaction::Event
      audited: false
      property: returns
      status: success
cached_catalog_status: not_used
"""
