"""Installing orch-package into a fresh virtualenv beside orch adds the agent and the
``orch package`` command; uninstalling removes them. Nothing but entry points connects the
two distributions (orch.testing.check_fresh_install does the work)."""

from __future__ import annotations

from pathlib import Path

from orch.testing import check_fresh_install

import orch_package


def test_install_and_uninstall_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    check_fresh_install(
        tmp_path, Path(orch_package.__file__).resolve().parent.parent,
        distribution="orch-package", module="orch_package", command="package",
        help_words=("install",), rpc_help=("package", "install", "package"),
        shipped=("import orch_package.agent as a; "
                 "print(a._PackageActions.ddl().name, 'site-packages' in a.__file__)",
                 ["package", "True"]))
