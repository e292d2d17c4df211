"""What binding a direct request to its targets costs, at 10, 1,000 and 10,000 targets.

Run: ``python -m pytest bench/test_bench_targets.py --benchmark-only -p no:cacheprovider -s``.

Two forms are measured side by side, both signed with ed25519 (``orch ca``'s default):

* ``split`` — what orch sends: the target set cut by ``split_targets`` into parts of at most
  ``TARGET_BYTES_PER_REQUEST`` bytes of names, one signed request per part, each published
  to the identities it names;
* ``literal`` — the naive form, for comparison: one signed request naming all N targets,
  published to every one of them;
* ``per-node`` — the other extreme: one signed request per target, naming only it.

For each: the client's cost to build and sign every payload (timed), the bytes one node
receives and the bytes all N publishes put through the broker (``extra_info``), and one
node's cost to decode the request and check that it is addressed (timed; the signature
check over the body, which grows with it, is timed separately). Identities look like
``web-00042.fra1.example.net`` (26 characters).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.protocol import Envelope, Request
from orch.demo import DemoPKI
from orch.security import pki as pkilib
from orch.security.x509 import X509Provider

SIZES = (10, 1_000, 10_000)
FORMS = ("split", "literal", "per-node")


@pytest.fixture(scope="module")
def demo() -> DemoPKI:
    return DemoPKI.create(Path(tempfile.mkdtemp(prefix="orch-bench-targets-")) / "ca")


@pytest.fixture(scope="module")
def client(demo: DemoPKI) -> Iterator[Client]:
    """A signing client; nothing is published, so the memory:// broker is never used."""
    settings = load_settings(overrides={"broker": "memory://", "collective": "bench",
                                        **demo.client_settings}, environ={})
    with Client(settings, caller="user=bench") as orch_client:
        yield orch_client


@pytest.fixture(scope="module")
def node(demo: DemoPKI) -> X509Provider:
    cert, key = pkilib.issue_certificate(demo.ca_cert, demo.ca_key, "node.bench",
                                         pkilib.ROLE_NODE)
    return X509Provider(credentials=pkilib.Credentials(cert, key, (demo.ca_cert,)))


def names(count: int) -> list[str]:
    return [f"web-{i:05d}.fra1.example.net" for i in range(count)]


def base_request() -> Request:
    return Request(agent="rpcutil", action="ping", collective="bench",
                   sender="laptop.example.net", caller="user=bench",
                   reply_to="orch.bench.reply.0123456789abcdef0123456789abcdef")


def payloads(client: Client, form: str, targets: list[str]) -> list[tuple[tuple[str, ...],
                                                                            bytes]]:
    """``(identities, payload)`` pairs as the client would publish them."""
    request = base_request()
    if form == "split":
        return client.addressed(request, targets)[1]
    parts = [tuple(targets)] if form == "literal" else [(name,) for name in targets]
    return [(part, sealed(client, replace(request, targets=part))) for part in parts]


def sealed(client: Client, request: Request) -> bytes:
    body = request.encode()
    return Envelope("request", body, client.security.seal("request", body)).encode()


def node_check(raw: bytes, identity: str) -> bool:
    """What the target binding adds on a node: decode the request and check the address."""
    request = Request.decode(Envelope.decode(raw).body)
    return request.addresses(identity)


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("form", FORMS)
def test_client_builds_and_signs(benchmark: Any, client: Client, form: str,
                                 count: int) -> None:
    targets = names(count)
    built = benchmark.pedantic(payloads, args=(client, form, targets),
                               rounds=3 if count == 10_000 else 20, warmup_rounds=1)
    per_node = [len(payload) for part, payload in built for _ in part]
    assert len(per_node) == count
    extra = benchmark.extra_info
    unaddressed = len(sealed(client, base_request()))  # a broadcast: targets null
    extra.update(signed_bodies=len(built), bytes_per_node_max=max(per_node),
                 broker_bytes_total=sum(per_node), broadcast_bytes=unaddressed,
                 client_ms=round(benchmark.stats.stats.median * 1e3, 2))
    print(f"\n{form:>8} {count:>6} targets: {len(built):>4} signed bodies, "
          f"{max(per_node):>7,} B per node, {sum(per_node) / 1e6:>9.2f} MB through the "
          f"broker, client {benchmark.stats.stats.median * 1e3:8.2f} ms "
          f"(a broadcast: {unaddressed:,} B)")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("form", FORMS)
def test_node_decodes_and_checks_address(benchmark: Any, client: Client, form: str,
                                         count: int) -> None:
    targets = names(count)
    built = payloads(client, form, targets)
    part, raw = max(built, key=lambda pair: len(pair[1]))  # a full part
    identity = part[-1]  # its last name: the longest scan
    assert node_check(raw, identity) and not node_check(raw, "web-99999.elsewhere")
    benchmark.pedantic(node_check, args=(raw, identity), rounds=200, iterations=5,
                       warmup_rounds=2)
    benchmark.extra_info.update(bytes=len(raw), check_us=round(benchmark.stats.stats.median
                                                               * 1e6, 1))
    print(f"\n{form:>8} {count:>6} targets: node decode + address check "
          f"{benchmark.stats.stats.median * 1e6:8.1f} µs ({len(raw):,} B)")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("form", FORMS)
def test_node_verifies_signature(benchmark: Any, client: Client, node: X509Provider,
                                 form: str, count: int) -> None:
    """The signature covers the body, so a longer target list costs hashing too."""
    _, raw = max(payloads(client, form, names(count)), key=lambda pair: len(pair[1]))
    envelope = Envelope.decode(raw)
    node.verify(envelope)  # the certificate is cached from here on, as on a live node
    benchmark.pedantic(node.verify, args=(envelope,), rounds=100, iterations=5,
                       warmup_rounds=2)
    benchmark.extra_info["verify_us"] = round(benchmark.stats.stats.median * 1e6, 1)
    print(f"\n{form:>8} {count:>6} targets: signature check "
          f"{benchmark.stats.stats.median * 1e6:8.1f} µs")
