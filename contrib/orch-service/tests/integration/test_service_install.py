"""Installing orch-service into a fresh virtualenv beside orch adds the agent and the
``orch service`` command; uninstalling removes them. Nothing but entry points connects the
two distributions (orch.testing.check_fresh_install does the work)."""

from __future__ import annotations

from pathlib import Path

from orch.testing import check_fresh_install

import orch_service


def test_install_and_uninstall_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    check_fresh_install(
        tmp_path, Path(orch_service.__file__).resolve().parent.parent,
        distribution="orch-service", module="orch_service", command="service",
        help_words=("restart",), rpc_help=("service", "restart", "service"),
        shipped=("import orch_service.agent as a; "
                 "print(a._ServiceActions.ddl().name, 'site-packages' in a.__file__)",
                 ["service", "True"]))
