"""A fact file that does not parse: refused at start with file and line, last good facts
kept on reload (issue 8, item 12)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from orch.core.facts import FactLoader, FactsError
from orch.facts.builtin import FileFacts


@pytest.mark.parametrize(("name", "text", "where"), [
    ("facts.yaml", "role: web\nenv: [prod\n", "line 3"),
    ("facts.json", '{"role": "web",\n "env": }', "line 2"),
    ("facts.yaml", "- a list\n", "must hold a mapping"),
])
def test_a_broken_fact_file_names_file_and_line(tmp_path: Path, name: str, text: str,
                                                where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FactsError, match=where) as info:
        FactLoader([FileFacts(str(path))])()
    assert str(path) in str(info.value)


def test_reload_keeps_the_last_good_facts_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "facts.yaml"
    path.write_text("role: web\n")
    loader = FactLoader([FileFacts(str(path))])
    assert loader() == {"role": "web"}
    path.write_text("role: [db\n")
    with caplog.at_level(logging.ERROR):
        assert loader() == {"role": "web"}
    assert "FACTS NOT RELOADED" in caplog.text and str(path) in caplog.text
    assert loader.error is not None
    path.write_text("role: db\n")
    assert loader() == {"role": "db"} and loader.error is None


def test_a_failing_plugin_source_is_still_skipped() -> None:
    class Broken:
        name = "broken"

        def load(self) -> dict[str, str]:
            raise RuntimeError("no network")

    class Good:
        name = "good"

        def load(self) -> dict[str, str]:
            return {"role": "web"}

    assert FactLoader([Broken(), Good()])() == {"role": "web"}


def test_orch_server_refuses_to_start_with_a_broken_fact_file(tmp_path: Path) -> None:
    path = tmp_path / "facts.yaml"
    path.write_text("role: web\nenv: [prod\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from orch.cli.main import main; main()", "server",
         "--broker", "memory://", "--security", "insecure", "--identity", "n1",
         "--facts", str(path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert f"fact file {path}, line 3" in proc.stderr
    assert "Traceback" not in proc.stderr
