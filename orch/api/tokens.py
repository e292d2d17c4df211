"""Bearer tokens, each mapped to the client certificate the API signs with on its behalf.

Why a token maps to a certificate and not to a set of permissions: the nodes already decide
who may run what (actionpolicy ``cert=<name>`` rules). An application gets a certificate of
its own like a person does, and its token only says "sign as this certificate"; the API adds
no second, divergent permission system.

The tokens file is YAML::

    tokens:
      - name: deploy-bot          # logged with every call it makes
        token: "s3cret…"          # or token_sha256: "<hex digest of the token>"
        tls_cert: /etc/orch/api/deploy-bot.pem
        tls_key: /etc/orch/api/deploy-bot.key

Tokens are compared in constant time over their SHA-256 digests, so the file may hold only
digests (``token_sha256``) and a timing side channel cannot reveal a prefix.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orch.core.errors import ConfigError

#: A tokens file larger than this is not a tokens file.
MAX_TOKENS_FILE = 1 << 20
#: The shortest plain token accepted (a guessable token is a configuration error).
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ApiToken:
    """One application: its name, the digest of its token, and the credentials it signs with."""

    name: str
    digest: bytes
    tls_cert: str | None
    tls_key: str | None

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.digest, digest(token))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenStore:
    """The tokens of one API process; :meth:`lookup` finds who a bearer token belongs to."""

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self.tokens = list(tokens)
        names = [t.name for t in self.tokens]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"tokens file: duplicate token name(s) {', '.join(duplicates)}")

    def lookup(self, token: str) -> ApiToken | None:
        """The token's entry, or None. Every entry is compared (constant time overall)."""
        found = None
        for entry in self.tokens:
            if entry.matches(token):
                found = entry
        return found

    @classmethod
    def load(cls, path: str | Path) -> TokenStore:
        """Read a tokens file; any problem is a :class:`ConfigError` naming the file and entry."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_TOKENS_FILE:
                raise ConfigError(f"tokens file {path} is over {MAX_TOKENS_FILE} bytes")
            raw = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read tokens file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"tokens file {path} is not valid YAML: {exc}") from None
        return cls.from_data(raw, str(path))

    @classmethod
    def from_data(cls, raw: Any, source: str = "tokens") -> TokenStore:
        base = Path(source).parent if source != "tokens" else Path(".")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("tokens"), list):
            raise ConfigError(f"{source}: expected a mapping with a 'tokens' list")
        return cls(_entry(item, i, source, base) for i, item in enumerate(raw["tokens"]))


def _entry(item: Any, index: int, source: str, base: Path) -> ApiToken:
    where = f"{source}: tokens[{index}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where} is not a mapping")
    unknown = set(item) - {"name", "token", "token_sha256", "tls_cert", "tls_key"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    if ("token" in item) == ("token_sha256" in item):
        raise ConfigError(f"{where} ({name}): give exactly one of 'token' or 'token_sha256'")
    if "token" in item:
        token = item["token"]
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{where} ({name}): 'token' must be a string of at least "
                              f"{MIN_TOKEN_LENGTH} characters")
        hashed = digest(token)
    else:
        try:
            hashed = bytes.fromhex(str(item["token_sha256"]))
        except ValueError:
            hashed = b""
        if len(hashed) != 32:
            raise ConfigError(f"{where} ({name}): 'token_sha256' must be 64 hex digits")
    paths = {}
    for key in ("tls_cert", "tls_key"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where} ({name}): '{key}' must be a file path")
        paths[key] = str(base / value) if value else None
    if (paths["tls_cert"] is None) != (paths["tls_key"] is None):
        raise ConfigError(f"{where} ({name}): give both 'tls_cert' and 'tls_key', or neither")
    return ApiToken(name, hashed, paths["tls_cert"], paths["tls_key"])
