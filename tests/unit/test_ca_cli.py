"""Tests of the `orch ca` commands through click's CliRunner."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orch.cli import ca as ca_module
from orch.cli.ca import ca
from orch.security import pki


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ORCH_"):
            monkeypatch.delenv(name)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(ca, list(args), env=env)
    # Errors are click errors (SystemExit with a message), never tracebacks.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output)
    assert "Traceback" not in result.output
    assert "PRIVATE KEY" not in result.output
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    assert run("init", "--dir", str(directory)).exit_code == 0
    return directory


def test_hook_registers_the_group() -> None:
    assert ca_module.orch_cli_commands() == [ca]
    assert ca.name == "ca"


def test_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("init", "issue", "list", "check"):
        assert name in result.output


def test_init_creates_the_ca(tmp_path: Path) -> None:
    result = run("init", "--dir", str(tmp_path / "ca"), "--name", "Test CA")
    assert result.exit_code == 0, result.output
    assert "Created CA 'Test CA' (ed25519)" in result.output
    assert str((tmp_path / "ca" / "ca.pem").resolve()) in result.output
    assert "orch ca issue --dir" in result.output
    assert mode(tmp_path / "ca" / "ca.key") == 0o600


def test_init_refuses_to_overwrite_without_force(ca_dir: Path) -> None:
    before = (ca_dir / "ca.pem").read_bytes()
    result = run("init", "--dir", str(ca_dir))
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output
    assert (ca_dir / "ca.pem").read_bytes() == before
    assert run("init", "--dir", str(ca_dir), "--force").exit_code == 0
    assert (ca_dir / "ca.pem").read_bytes() != before


def test_init_rsa(tmp_path: Path) -> None:
    result = run("init", "--dir", str(tmp_path), "--key-type", "rsa", "--rsa-bits", "2048")
    assert result.exit_code == 0, result.output
    assert "(rsa-2048)" in result.output
    issued = run("issue", "--dir", str(tmp_path), "--node", "web1")
    assert "(rsa-2048)" in issued.output


def test_init_bad_key_type_is_a_usage_error(tmp_path: Path) -> None:
    result = run("init", "--dir", str(tmp_path), "--key-type", "dsa")
    assert result.exit_code == 2
    assert "dsa" in result.output


def test_issue_client_prints_the_exact_flags(ca_dir: Path) -> None:
    result = run("issue", "--dir", str(ca_dir), "--client", "alice")
    assert result.exit_code == 0, result.output
    root = ca_dir.resolve()
    cert = root / "issued" / "client" / "alice.pem"
    key = root / "issued" / "client" / "alice.key"
    assert (f"--security x509 --tls-cert {cert} --tls-key {key} --tls-ca {root / 'ca.pem'}"
            in result.output)
    for line in ("security: x509", f"tls_cert: {cert}", f"tls_key: {key}",
                 f"tls_ca: {root / 'ca.pem'}"):
        assert line in result.output
    assert "identity:" not in result.output
    assert mode(key) == 0o600
    assert pki.certificate_role(pki.load_certificate_file(cert, "c")) == "client"


def test_issue_node_prints_the_identity_too(ca_dir: Path) -> None:
    result = run("issue", "--dir", str(ca_dir), "--node", "web1", "--days", "30")
    assert result.exit_code == 0, result.output
    assert "orch server --identity web1 --security x509 --tls-cert" in result.output
    assert "identity: web1" in result.output
    assert pki.certificate_role(pki.load_certificate_file(
        ca_dir / "issued" / "node" / "web1.pem", "c")) == "node"


def test_issue_needs_exactly_one_of_node_and_client(ca_dir: Path) -> None:
    neither = run("issue", "--dir", str(ca_dir))
    both = run("issue", "--dir", str(ca_dir), "--node", "a", "--client", "b")
    for result in (neither, both):
        assert result.exit_code == 2
        assert "exactly one of --node NAME, --client NAME or --server NAME" in result.output


def test_issue_rejects_a_bad_name(ca_dir: Path) -> None:
    result = run("issue", "--dir", str(ca_dir), "--client", "../../etc/passwd")
    assert result.exit_code == 2
    assert "not a valid name" in result.output
    assert not (ca_dir / "issued").exists()


def test_issue_refuses_to_overwrite_without_force(ca_dir: Path) -> None:
    assert run("issue", "--dir", str(ca_dir), "--client", "alice").exit_code == 0
    again = run("issue", "--dir", str(ca_dir), "--client", "alice")
    assert again.exit_code == 1
    assert "already exists" in again.output and "--force" in again.output
    assert run("issue", "--dir", str(ca_dir), "--client", "alice", "--force").exit_code == 0


def test_issue_without_a_ca(tmp_path: Path) -> None:
    result = run("issue", "--dir", str(tmp_path), "--node", "web1")
    assert result.exit_code == 1
    assert f"orch ca init --dir {tmp_path}" in result.output


def test_dir_from_the_environment(tmp_path: Path) -> None:
    env = {"ORCH_CA_DIR": str(tmp_path / "ca")}
    assert run("init", env=env).exit_code == 0
    assert run("issue", "--client", "alice", env=env).exit_code == 0
    assert "alice" in run("list", env=env).output


def test_list(ca_dir: Path) -> None:
    empty = run("list", "--dir", str(ca_dir))
    assert empty.exit_code == 0 and "No certificates issued" in empty.output
    run("issue", "--dir", str(ca_dir), "--node", "web1")
    run("issue", "--dir", str(ca_dir), "--client", "alice")
    result = run("list", "--dir", str(ca_dir))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["ROLE", "NAME"]
    assert lines[1].split()[:2] == ["node", "web1"]
    assert lines[2].split()[:2] == ["client", "alice"]


def test_list_json(ca_dir: Path) -> None:
    run("issue", "--dir", str(ca_dir), "--client", "alice")
    result = run("list", "--dir", str(ca_dir), "--json")
    assert result.exit_code == 0
    (entry,) = json.loads(result.output)
    assert entry["name"] == "alice" and entry["role"] == "client"
    assert len(entry["fingerprint"]) == 64
    assert {"serial", "not_after", "cert_path", "key_path", "expired"} <= set(entry)


def test_list_without_a_ca(tmp_path: Path) -> None:
    result = run("list", "--dir", str(tmp_path))
    assert result.exit_code == 1 and "no CA" in result.output


def test_check_reports_the_loaded_credentials(ca_dir: Path) -> None:
    run("issue", "--dir", str(ca_dir), "--client", "alice")
    folder = ca_dir / "issued" / "client"
    result = run("check", "--tls-cert", str(folder / "alice.pem"),
                 "--tls-key", str(folder / "alice.key"), "--tls-ca", str(ca_dir / "ca.pem"),
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["name"] == "alice" and report["role"] == "client"


def test_check_explains_what_is_missing(ca_dir: Path) -> None:
    result = run("check", "--identity", "web1")
    assert result.exit_code == 1
    assert "tls_cert" in result.output and "orch ca issue --dir DIR --node web1" in result.output
    result = run("check", "--identity", "web1", "--ssldir", str(ca_dir / "nowhere"))
    assert result.exit_code == 1
    assert "puppet agent -t" in result.output
