"""Installing orch-puppet into a fresh virtualenv beside orch adds the agent, its fact source
and the ``orch puppet`` commands; uninstalling removes them. Nothing but entry points
connects the two distributions (orch.testing.check_fresh_install does the work); the DDL
and the Ruby helper must ship as package data."""

from __future__ import annotations

from pathlib import Path

from orch.testing import check_fresh_install

import orch_puppet


def test_install_and_uninstall_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    check_fresh_install(
        tmp_path, Path(orch_puppet.__file__).resolve().parent.parent,
        distribution="orch-puppet", module="orch_puppet", command="puppet",
        hooks=("orch_agent_names", "orch_agents", "orch_cli_commands", "orch_fact_sources"),
        help_words=("status", "runonce", "runall", "summary", "count", "last_run_summary",
                    "enable", "disable", "resource"),
        rpc_help=("puppet", "runonce", "splaylimit"),
        shipped=("from orch_puppet.runs import ral_script; "
                 "import orch_puppet.agent as a; "
                 "print(ral_script().is_file(), a.PuppetAgent.ddl().name, "
                 "'site-packages' in a.__file__)",
                 ["True", "puppet", "True"]))
