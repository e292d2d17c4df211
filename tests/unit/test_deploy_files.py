"""The shipped deployment files (``deploy/``) cannot drift from the code.

* ``deploy/server.yaml`` loads as a config file, names every server setting, shows each
  commented default as the real default, and marks exactly the settings a SIGHUP cannot
  change as ``[restart]``. A new server setting fails here until the file documents it.
* ``deploy/systemd/orch-server.service`` passes ``systemd-analyze verify`` (when systemd's
  tools are installed) and keeps its hardening and its stop timeout above
  ``shutdown_timeout``.
* ``deploy/build_dists.py`` (``tox -e build``) builds orch and every ``contrib/*/``.
"""

from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orch.core.config import Settings, load_settings
from orch.core.daemon import RESTART_ONLY

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SERVER_YAML = DEPLOY / "server.yaml"
UNIT = DEPLOY / "systemd" / "orch-server.service"
#: A line that sets a setting, commented out ("#name: value") or not ("name: value").
SETTING_LINE = re.compile(r"^(#)?([a-z_]+):(.*)$")
#: Defaults that depend on the machine, shown as an empty value.
COMPUTED_DEFAULTS = {"identity"}


def server_settings() -> list[str]:
    """Every setting an ``orch server`` reads: all but those documented as client-only."""
    return [name for name, doc in Settings.documented().items()
            if not doc.startswith("Client:")]


def setting_lines() -> dict[str, tuple[bool, str, str]]:
    """``{name: (commented, value text, the comment block above it)}``; settings on
    consecutive lines share the block above the first (``tls_cert``, ``tls_key`` …)."""
    found: dict[str, tuple[bool, str, str]] = {}
    known = set(Settings.documented())
    block: list[str] = []
    after_setting = False
    for line in SERVER_YAML.read_text().splitlines():
        match = SETTING_LINE.match(line)
        if match and match.group(2) in known:
            found[match.group(2)] = (bool(match.group(1)), match.group(3).strip(),
                                     "\n".join(block))
            after_setting = True
        elif line.startswith("#"):
            if after_setting:
                block, after_setting = [], False
            block.append(line)
        elif not line.strip():
            block, after_setting = [], False
    return found


def test_server_yaml_loads() -> None:
    settings = load_settings(str(SERVER_YAML), environ={})
    assert settings.security == "x509" and settings.tls_key == "/etc/orch/ssl/node.key"
    from orch.security.actionpolicy import SECTION, ActionPolicySettings

    assert settings.section(SECTION, ActionPolicySettings).policy_dir == "/etc/orch/policies"
    assert settings.audit_log == "/var/log/orch/audit.log"


def test_server_yaml_mentions_every_server_setting() -> None:
    lines = setting_lines()
    missing = [name for name in server_settings() if name not in lines]
    assert not missing, (
        "deploy/server.yaml does not document these server settings; add a commented "
        "default for each:\n" + "\n".join(
            f"# {Settings.documented()[name]}\n#{name}: "
            f"{json_like(getattr(Settings(), name))}" for name in missing))


def json_like(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def test_commented_values_are_the_defaults() -> None:
    defaults = Settings()
    wrong = {}
    for name, (commented, text, _) in setting_lines().items():
        if not commented or name in COMPUTED_DEFAULTS:
            continue
        field = {f.name: f for f in dataclasses.fields(Settings)}[name]
        value = yaml.safe_load(text) if text else None
        shown = field.metadata["convert"](value) if value is not None else None
        actual = getattr(defaults, name)
        if shown != actual and not (shown is None and actual in ([], {}, None)):
            wrong[name] = (text, actual)
    assert not wrong, f"commented values that are not the defaults: {wrong}"


def test_restart_markers_match_what_a_reload_cannot_change() -> None:
    marked = {name for name, (_, _, block) in setting_lines().items() if "[restart]" in block}
    assert marked == set(RESTART_ONLY) & set(setting_lines()), (
        sorted(marked - set(RESTART_ONLY)), sorted(set(RESTART_ONLY) - marked))


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_is_hardened_and_waits_for_shutdown_timeout() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["User"] == "orch"
    for directive in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                      "RestrictSUIDSGID"):
        assert service[directive] == "yes", directive
    assert service["ProtectSystem"] == "strict" and service["UMask"] == "0077"
    assert float(service["TimeoutStopSec"]) > Settings().shutdown_timeout
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


@pytest.mark.parametrize("unit", [UNIT, DEPLOY / "systemd" / "orch-registry.service"],
                         ids=lambda unit: unit.name)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point it at this environment's orch.
    orch = Path(sys.executable).parent / "orch"
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/orch/bin/orch", str(orch)))
    checked = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                             timeout=60)
    problems = [line for line in (checked.stdout + checked.stderr).splitlines()
                if unit.name in line]
    assert checked.returncode == 0 and not problems, checked.stdout + checked.stderr


def test_build_script_builds_orch_and_every_contrib_distribution() -> None:
    spec = importlib.util.spec_from_file_location("build_dists", DEPLOY / "build_dists.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = [REPO, *sorted(p.parent for p in REPO.glob("contrib/*/setup.cfg"))]
    assert module.distributions(REPO) == expected
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    assert "deploy/build_dists.py" in tox["testenv:build"]["commands"]
