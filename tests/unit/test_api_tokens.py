"""The API's tokens file: what it accepts, and a clear error for anything else."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("starlette")

from orch.api.serve import Listen
from orch.api.tokens import TokenStore
from orch.cli.main import cli
from orch.core.errors import ConfigError

TOKEN = "a-long-enough-token-value"


def store(*entries: dict[str, Any]) -> TokenStore:
    return TokenStore.from_data({"tokens": list(entries)})


def test_lookup_by_plain_token_or_digest() -> None:
    tokens = store({"name": "plain", "token": TOKEN, "tls_cert": "a.pem", "tls_key": "a.key"},
                   {"name": "hashed", "token_sha256": hashlib.sha256(b"another-token-value"
                                                                     ).hexdigest()})
    found = tokens.lookup(TOKEN)
    assert found is not None and found.name == "plain" and found.tls_cert == "a.pem"
    hashed = tokens.lookup("another-token-value")
    assert hashed is not None and hashed.name == "hashed"
    assert tokens.lookup("wrong") is None


@pytest.mark.parametrize("raw, message", [
    (None, "expected a mapping with a 'tokens' list"),
    ({"tokens": "x"}, "'tokens' list"),
    ({"tokens": ["x"]}, "is not a mapping"),
    ({"tokens": [{"token": TOKEN}]}, "'name' must be"),
    ({"tokens": [{"name": "a"}]}, "exactly one of 'token' or 'token_sha256'"),
    ({"tokens": [{"name": "a", "token": "short"}]}, "at least 16 characters"),
    ({"tokens": [{"name": "a", "token_sha256": "zz"}]}, "64 hex digits"),
    ({"tokens": [{"name": "a", "token": TOKEN, "tls_cert": "c.pem"}]}, "both 'tls_cert'"),
    ({"tokens": [{"name": "a", "token": TOKEN, "colour": 1}]}, "unknown key(s) colour"),
    ({"tokens": [{"name": "a", "token": TOKEN}, {"name": "a", "token": TOKEN + "x"}]},
     "duplicate token name(s) a"),
])
def test_bad_tokens_data_is_a_config_error(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TokenStore.from_data(raw)
    assert message in str(caught.value)


@given(st.text(max_size=60))
def test_no_other_string_matches_a_token(guess: str) -> None:
    tokens = store({"name": "a", "token": TOKEN})
    assert (tokens.lookup(guess) is not None) == (guess == TOKEN)


def test_relative_credential_paths_are_relative_to_the_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n- {{name: a, token: {TOKEN}, tls_cert: a.pem, tls_key: a.key}}\n")
    entry = TokenStore.load(path).tokens[0]
    assert entry.tls_cert == str(tmp_path / "a.pem")


@pytest.mark.parametrize("text", ["8080", "host:", ":80", "host:http", "host:70000"])
def test_bad_listen_address(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        Listen.parse(text)


def test_listen_address_forms() -> None:
    assert Listen.parse("127.0.0.1:8080") == Listen("127.0.0.1", 8080)
    assert Listen.parse("[::1]:80").url(tls=True) == "https://[::1]:80"


@pytest.mark.parametrize("content, listen, message", [
    (None, "127.0.0.1:0", "cannot read tokens file"),
    ("tokens: [", "127.0.0.1:0", "is not valid YAML"),
    ("tokens: []\n", "nowhere", "expected HOST:PORT"),
])
def test_orch_api_bad_input_exits_2_with_a_message(tmp_path: Path, content: str | None,
                                                   listen: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(cli, ["api", "--tokens", str(path), "--listen", listen])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
