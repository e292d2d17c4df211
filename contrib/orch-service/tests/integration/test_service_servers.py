"""``orch service`` over several real ``orch server`` processes on RabbitMQ.

The daemons run the simulated provider (``plugins.service.provider: simulated`` in their
config file): several servers on one machine would otherwise all drive the same services,
and the summaries are about a fleet whose nodes differ. The SysV provider against a real
init script is ``tests/test_service_sysv.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from orch.testing import ServerFleet, ServerFleetFactory, ServerNode

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def start(orch_servers: ServerFleetFactory, tmp_path: Path) -> ServerFleet:
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"service": {
        "provider": "simulated", "allow": ["nginx", "cron"]}}}))
    nodes = [ServerNode(f"web{i}", {"role": "web"}, ("nginx", "role::web")) for i in range(1, 5)]
    nodes.append(ServerNode("db1", {"role": "db"}, ("postgresql", "role::db")))
    return orch_servers(BROKER, nodes, label="svc", env={"ORCH_CONFIG": str(config)})


def test_status_restart_and_stop_summaries(orch_servers: ServerFleetFactory,
                                           tmp_path: Path) -> None:
    fleet = start(orch_servers, tmp_path)
    stopped = fleet.run_orch("service", "nginx", "stop", "-I", "web2", "-I", "web4",
                             "--yes")
    assert stopped.rc == 0, stopped.describe()

    status = fleet.run_orch("service", "nginx", "status", "-C", "nginx")
    assert status.rc == 0, status.describe()
    assert "nginx: running: 2, stopped: 2 (web2, web4)" in status.stdout

    everyone = fleet.run_orch("service", "nginx", "status")
    assert everyone.rc == 1  # db1 has no nginx
    assert "db1" in everyone.stdout and "unknown service 'nginx'" in everyone.stdout
    assert "nginx: running: 2, stopped: 2 (web2, web4), unknown: 1 (db1)" in everyone.stdout

    restarted = fleet.run_orch("service", "nginx", "restart", "-C", "nginx", "--batch", "2",
                               "--batch-sleep", "0", "--json")
    assert restarted.rc == 0, restarted.describe()
    document = json.loads(restarted.stdout)
    assert document["summary"]["status"] == {"running": ["web1", "web2", "web3", "web4"]}

    before = json.loads(fleet.run_orch("service", "cron", "status", "--json").stdout)
    asked = fleet.run_orch("service", "cron", "stop", input="n\n")
    assert asked.rc == 1 and "stop cron on 5 nodes?" in asked.stderr
    assert "nothing done" in asked.stderr
    after = json.loads(fleet.run_orch("service", "cron", "status", "--json").stdout)
    assert after["summary"] == before["summary"]
