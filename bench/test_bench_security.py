"""Security costs: verifying requests (per core, on a node) and replies (at the client),
and validating a request's arguments against its DDL.

Run: ``python -m pytest bench/test_bench_security.py --benchmark-only -p no:cacheprovider``.
Each benchmark verifies a batch of distinct signed messages (so no cache can answer for
the signature itself); ``extra_info["per_second"]`` is the batch size over the mean time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from orch.core.protocol import Envelope, Reply, Request, Status
from orch.demo import DemoPKI
from orch.security import pki as pkilib
from orch.security.x509 import X509Provider

BATCH = 500


@pytest.fixture(scope="module")
def providers() -> tuple[X509Provider, X509Provider]:
    """(client, node) providers from one throw-away CA, ed25519 as ``orch ca`` defaults."""
    demo = DemoPKI.create(Path(tempfile.mkdtemp(prefix="orch-bench-sec-")) / "ca")
    cert, key = pkilib.issue_certificate(demo.ca_cert, demo.ca_key, "client.bench",
                                         pkilib.ROLE_CLIENT)
    client = X509Provider(credentials=pkilib.Credentials(cert, key, (demo.ca_cert,)))
    cert, key = pkilib.issue_certificate(demo.ca_cert, demo.ca_key, "node.bench",
                                         pkilib.ROLE_NODE)
    node = X509Provider(credentials=pkilib.Credentials(cert, key, (demo.ca_cert,)))
    return client, node


def _sealed(provider: X509Provider, kind: str, body: str) -> bytes:
    return Envelope(kind, body, provider.seal(kind, body)).encode()


def _verify_all(provider: X509Provider, raw: list[bytes]) -> None:
    for message in raw:
        provider.verify(Envelope.decode(message))


def _record(benchmark: Any) -> None:
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["per_second"] = round(BATCH / mean)
    print(f"\n{benchmark.name}: {BATCH / mean:,.0f} messages verified per second (one core)")


def test_requests_verified_per_second_per_core(
    benchmark: Any, providers: tuple[X509Provider, X509Provider]
) -> None:
    client, node = providers
    raw = [_sealed(client, "request", Request(
        agent="rpcutil", action="ping", collective="bench", sender="bench",
        caller="cert=client.bench", reply_to="orch.bench.reply.x").encode())
        for _ in range(BATCH)]
    benchmark.pedantic(_verify_all, args=(node, raw), rounds=10, warmup_rounds=1)
    _record(benchmark)


def test_replies_verified_per_second_at_the_client(
    benchmark: Any, providers: tuple[X509Provider, X509Provider]
) -> None:
    client, node = providers
    raw = [_sealed(node, "reply", Reply(
        f"id{i}", "node.bench", "rpcutil", "ping", Status.OK, "OK", {"pong": i}).encode())
        for i in range(BATCH)]
    benchmark.pedantic(_verify_all, args=(client, raw), rounds=10, warmup_rounds=1)
    _record(benchmark)


def test_requests_verified_per_second_with_a_10000_entry_crl(
    benchmark: Any, tmp_path: Path
) -> None:
    """The revocation check's cost: the same requests, checked against a CRL listing
    10,000 other serials (one set lookup per message)."""
    import datetime as dt

    from orch.security.pki.revocation import build_crl, crl_pem

    demo = DemoPKI.create(tmp_path / "ca")
    now = dt.datetime.now(dt.UTC)
    crl = build_crl(demo.ca_cert, demo.ca_key, [(n, now, "") for n in range(1, 10_001)], 1, 7)
    crl_file = tmp_path / "crl.pem"
    crl_file.write_bytes(crl_pem(crl))
    cert, key = pkilib.issue_certificate(demo.ca_cert, demo.ca_key, "client.bench",
                                         pkilib.ROLE_CLIENT)
    signer = X509Provider(credentials=pkilib.Credentials(cert, key, (demo.ca_cert,)))
    cert, key = pkilib.issue_certificate(demo.ca_cert, demo.ca_key, "node.bench",
                                         pkilib.ROLE_NODE)
    node = X509Provider(credentials=pkilib.Credentials(cert, key, (demo.ca_cert,)),
                        crl=crl_file)
    assert node.revocation
    raw = [_sealed(signer, "request", Request(
        agent="rpcutil", action="ping", collective="bench", sender="bench",
        caller="cert=client.bench", reply_to="orch.bench.reply.x").encode())
        for _ in range(BATCH)]
    benchmark.pedantic(_verify_all, args=(node, raw), rounds=10, warmup_rounds=1)
    _record(benchmark)


def test_ddl_validation_per_request(benchmark: Any) -> None:
    from orch.agents.rpcutil import Rpcutil
    from orch.ddl.builtin import VALIDATORS

    action = Rpcutil.ddl().actions["get_fact"]
    action.check_arguments({"fact": "os.family"}, VALIDATORS)  # compile once

    def validate() -> None:
        for _ in range(BATCH):
            action.check_arguments({"fact": "os.family"}, VALIDATORS)

    benchmark.pedantic(validate, rounds=10, warmup_rounds=1)
    per_call_us = benchmark.stats.stats.mean / BATCH * 1e6
    benchmark.extra_info["per_request_us"] = round(per_call_us, 2)
    print(f"\nDDL validation: {per_call_us:.1f} µs per request")
