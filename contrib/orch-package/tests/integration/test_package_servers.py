"""``orch package`` over several real ``orch server`` processes on RabbitMQ.

The daemons run the simulated provider (``plugins.package.provider: simulated`` in their
config file): several servers on one machine would otherwise share one dpkg database, and
the summaries are about a fleet whose nodes differ. apt/dpkg for real is
``tests/test_package_dpkg.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from orch.testing import ServerFleetFactory, ServerNode

from orch_package.simulated import latest

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def test_version_distribution_update_and_uninstall(orch_servers: ServerFleetFactory,
                                                   tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"package": {
        "provider": "simulated", "allow": ["nginx"]}}}))
    nodes = [ServerNode(f"web{i}", {"role": "web"}, ("nginx",)) for i in range(1, 5)]
    fleet = orch_servers(BROKER, nodes, label="pkg", env={"ORCH_CONFIG": str(config)})

    pinned = fleet.run_orch("package", "nginx", "install", "1.22.1-9", "-I", "web1", "-I",
                            "web3")
    assert pinned.rc == 0, pinned.describe()
    latest_ = fleet.run_orch("package", "nginx", "update", "-I", "web2", "-I", "web4")
    assert latest_.rc == 0, latest_.describe()

    status = fleet.run_orch("package", "nginx", "status")
    assert status.rc == 0, status.describe()
    assert f"nginx: 1.22.1-9: 2 nodes, {latest('nginx')}: 2 nodes (web2, web4)" in \
        status.stdout or f"nginx: {latest('nginx')}: 2 nodes, 1.22.1-9: 2 nodes (web1, web3)" \
        in status.stdout, status.stdout

    outdated = fleet.run_orch("package", "nginx", "outdated")
    assert outdated.rc == 0 and "outdated on 2 node(s), up to date on 2" in outdated.stdout

    refused = fleet.run_orch("package", "openssl", "update", "-I", "web1")
    assert refused.rc == 1 and "plugins.package.allow" in refused.stdout

    updated = fleet.run_orch("package", "nginx", "update", "--batch", "2", "--batch-sleep", "0",
                             "--json")
    assert updated.rc == 0, updated.describe()
    assert json.loads(updated.stdout)["summary"]["ensure"] == {
        latest("nginx"): ["web1", "web2", "web3", "web4"]}

    asked = fleet.run_orch("package", "nginx", "uninstall", input="n\n")
    assert asked.rc == 1 and "uninstall nginx on 4 nodes?" in asked.stderr
    removed = fleet.run_orch("package", "nginx", "uninstall", "--yes")
    assert removed.rc == 0 and "nginx: absent: 4 nodes" in removed.stdout
