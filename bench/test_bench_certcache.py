"""What a new process pays for the certificate cache before it checks its first reply.

A user who has verified the certificates of a large fleet keeps one entry per node in the
cache file (:mod:`orch.security.certcache`). A command that then talks to one node of it —
``orch rpc … -I web1`` — opens a new :class:`~orch.security.certcache.TrustCache` and looks
up one certificate: the timed part is that first lookup (read the file, check its HMAC,
make its entries findable, decode the one asked for). Format 1 decoded every entry there;
format 2 decodes only the ones asked for.

Run: ``python -m pytest bench/test_bench_certcache.py --benchmark-only -p no:cacheprovider -s``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from orch.security.certcache import Entry, TrustCache

SCOPE = "bench" * 8
SECRET = b"k" * 32


def _key(index: int) -> str:
    return hashlib.sha256(f"certificate {index}".encode()).hexdigest()


@pytest.mark.parametrize("entries", [1000, 10000, 50000])
def test_first_lookup_in_a_new_process(benchmark: Any, tmp_path: Path, entries: int) -> None:
    os.chmod(tmp_path, 0o700)
    directory = tmp_path / "x509"
    writer = TrustCache(directory, SCOPE, SECRET)
    now = time.time()
    for index in range(entries):
        writer.put(_key(index), Entry(
            f"node{index:05d}.example.net", "node", hashlib.sha256(b"%d" % index).hexdigest(),
            "ed25519", secrets.token_bytes(32), now, now + 365 * 86_400, "a" * 64, str(index)))
    assert writer.flush() == entries
    size = sum(path.stat().st_size for path in directory.iterdir())

    def first_lookup() -> Entry | None:
        return TrustCache(directory, SCOPE, SECRET).get(_key(entries // 2))

    found = benchmark(first_lookup)
    assert found is not None and found.name == f"node{entries // 2:05d}.example.net"
    benchmark.extra_info.update({"entries": entries, "file_kib": size // 1024})
    print(f"\n{entries} entries ({size // 1024} KiB): first lookup "
          f"{benchmark.stats.stats.median * 1000:.1f} ms (median)")
