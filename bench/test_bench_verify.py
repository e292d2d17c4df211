"""Reply injection: how many signed replies per second one client verifies, on real RabbitMQ.

Nothing but the client is measured. ``N`` node certificates are issued by a throw-away CA
(``orch ca``'s own code, ed25519), each node signs one reply to one request, and before each
round those ``N`` pre-signed replies are published straight at the client's reply queue. The
timed part is :meth:`Client.collect` alone, from its start to the ``N``-th verified reply:
receiving (kombu/amqp), decoding, checking each certificate and each signature.

Three ways the client can meet the certificates:

``fresh-process``
    a new :class:`Client` (so a new security provider, as a new ``orch`` command would have)
    every round, the per-user certificate cache on disk already filled by an earlier round;
``no-disk-cache``
    the same, with the disk cache off: every certificate is parsed and chained to the CA
    again in every round, which is what every new ``orch`` process paid before the cache;
``same-process``
    one client for every round: the certificates come from the in-process cache;
``one-core``
    ``fresh-process`` with the reply-checking worker processes off (``verify_workers = 0``).

In the same run, and on the same ``N`` signed bodies, the raw ed25519 verification rate of one
core is measured (``cryptography``, and PyNaCl/libsodium when installed), so the client's
rate is read beside the physical limit it is compared with. And for every scenario the CPU
each verified reply cost, by where it went — the collecting process, its checker processes,
RabbitMQ — with the rate the machine's cores could reach if they did nothing else
(``cpu_bound_replies_per_second``): on two cores, what the stack spends per reply, not only
the signature check, bounds the client.

Run: ``python -m pytest bench/test_bench_verify.py --benchmark-only -p no:cacheprovider -s``.
The client runs in this process: from the checkout's root it is the checkout's ``orch``
(``python -m`` puts the current directory on ``sys.path``); to measure an installed wheel,
run pytest from another directory, naming this file by its path.
``ORCH_BENCH_INJECT_NODES`` sets ``N`` (default 5,000; 1,000 to 10,000 is the useful range).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bench_support import (
    AMQP_URL,
    CPUBudget,
    IdleGate,
    broker_pids,
    client_settings,
    cpu_seconds,
    delete_exchanges,
    descendants_cpu_seconds,
    new_collective,
)

from orch.core.client import CallResult, Client
from orch.core.protocol import Envelope, Reply, Request, Status
from orch.security import pki as pkilib
from orch.security.x509 import X509Provider

NODES = int(os.environ.get("ORCH_BENCH_INJECT_NODES", "5000"))
ROUNDS = 5
COLLECT_TIMEOUT = 120.0


@dataclass
class Injection:
    """A throw-away CA, the client's settings, and ``NODES`` replies signed in advance."""

    workdir: Path
    collective: str
    settings_values: dict[str, Any]
    request: Request
    identities: list[str]
    payloads: list[bytes]
    #: (public key, signature, body bytes) of every payload, for the raw verify rate.
    signed: list[tuple[Any, bytes, bytes]]
    raw_rates: dict[str, float] = field(default_factory=dict)

    def client(self, **values: Any) -> Client:
        merged = {k: v for k, v in {**self.settings_values, **values}.items()
                  if _settings_know(k)}
        return Client(client_settings(self.collective, AMQP_URL, **merged))


def _issue_and_sign(directory: Path, collective: str) -> Injection:
    ca = pkilib.init_ca(directory / "ca", common_name="orch bench inject CA")
    client = pkilib.issue(directory / "ca", "bench.user", pkilib.ROLE_CLIENT)
    ca_cert, ca_key = pkilib.load_ca(directory / "ca")
    values = {"security": "x509", "tls_cert": client.cert_path, "tls_key": str(client.key_path),
              "tls_ca": ca.cert_path, "cert_cache": str(directory / "cert-cache")}
    # The request id is all a reply has to match; the same request serves every round.
    request = Request(agent="rpcutil", action="ping", collective=collective,
                      sender="bench", caller="cert=bench.user", reply_to="unused")
    width = len(str(NODES))
    identities = [f"node{i:0{width}d}" for i in range(NODES)]
    payloads: list[bytes] = []
    signed: list[tuple[Any, bytes, bytes]] = []
    import base64

    for identity in identities:
        cert, key = pkilib.issue_certificate(ca_cert, ca_key, identity, pkilib.ROLE_NODE)
        node = X509Provider(credentials=pkilib.Credentials(cert, key, (ca_cert,)))
        body = Reply(request.id, identity, "rpcutil", "ping", Status.OK, "OK",
                     {"pong": time.time()}).encode()
        security = node.seal("reply", body)
        payloads.append(Envelope("reply", body, security).encode())
        signed.append((cert.public_key(), base64.b64decode(security["sig"]), body.encode()))
    return Injection(directory, collective, values, request, identities, payloads, signed)


@pytest.fixture(scope="module")
def injection() -> Iterator[Injection]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="orch-bench-inject-") as tmp:
        collective = new_collective()
        setup = _issue_and_sign(Path(tmp), collective)
        print(f"\n{NODES} node certificates issued and replies signed in "
              f"{time.monotonic() - started:.1f}s")
        setup.raw_rates = _raw_verify_rates(setup.signed)
        try:
            yield setup
        finally:
            delete_exchanges(collective)


def _settings_know(name: str) -> bool:
    """Whether this orch has setting ``name``, a core one or a plugin's top-level alias
    (``cert_cache`` is the x509 section's): an older wheel measured side by side may lack
    a newer one. Before aliases counted, ``cert_cache`` was dropped here, so ``no-disk-cache``
    kept the cache and ``fresh-process`` used the per-user one, not the bench's own."""
    from orch.core.config import Settings
    from orch.core.plugins import default_registry

    return name in Settings.documented() or default_registry().setting_alias(name) is not None


def _raw_verify_rates(signed: list[tuple[Any, bytes, bytes]]) -> dict[str, float]:
    """Signatures verified per second by one core, best of three passes, per library."""
    from cryptography.hazmat.primitives import serialization

    def cryptography_pass() -> None:
        for public_key, signature, data in signed:
            public_key.verify(signature, data)

    passes: dict[str, Callable[[], None]] = {"cryptography": cryptography_pass}
    try:
        from nacl.bindings import crypto_sign_open
    except ImportError:
        pass
    else:
        raw = [(k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
                s, d) for k, s, d in signed]

        def sodium_pass() -> None:
            for public_key, signature, data in raw:
                crypto_sign_open(signature + data, public_key)

        passes["pynacl"] = sodium_pass
    rates: dict[str, float] = {}
    for name, run in passes.items():
        best = min(_timed(run) for _ in range(3))
        rates[name] = len(signed) / best
        print(f"raw ed25519 verify, one core, {name}: {rates[name]:,.0f}/s")
    return rates


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Rounds:
    """pytest-benchmark ``setup``: a client (new or kept), then the replies published at it."""

    def __init__(self, injection: Injection, fresh: bool, values: dict[str, Any]) -> None:
        self.injection = injection
        self.fresh = fresh
        self.values = values
        self.client: Client | None = None
        self.gate = IdleGate()
        self.cpu: list[float] = []
        self._cpu_start = 0.0
        broker = broker_pids()
        #: Everything a verified reply costs this machine: the collecting process (framing,
        #: hand-over, accepting), its checker processes (decoding, verifying) and RabbitMQ
        #: (delivering).
        self.budget = CPUBudget({"client": time.process_time,
                                 "checkers": descendants_cpu_seconds,
                                 "broker": lambda: cpu_seconds(broker)})

    def setup(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        import kombu

        if self.fresh and self.client is not None:
            self.client.close()
            self.client = None
        if self.client is None:
            values = {k: v for k, v in self.values.items() if not k.startswith("_")}
            self.client = self.injection.client(**values)
            if "_workers" in self.values:
                self.client.verify_workers = self.values["_workers"]
        channel = self.client.channel
        self.gate()
        with kombu.Connection(AMQP_URL, connect_timeout=5) as conn:
            producer = kombu.Producer(conn.channel())
            for payload in self.injection.payloads:
                producer.publish(payload, exchange="", routing_key=channel.reply_to,
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=1)
            # A synchronous round trip on the same channel: every publish before it has
            # reached the broker, so the timed part never waits for the publisher.
            producer.channel.exchange_declare("amq.direct", "direct", passive=True)
        self._cpu_start = time.process_time()
        return (self.client,), {}

    def collect(self, client: Client) -> CallResult:
        with self.budget.span():
            result = client.collect(self.injection.request, self.injection.identities,
                                    COLLECT_TIMEOUT)
        self.cpu.append(time.process_time() - self._cpu_start)
        return result

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


SCENARIOS = {
    "fresh-process": (True, {}),
    "no-disk-cache": (True, {"cert_cache": "off"}),
    "same-process": (False, {}),
    # The same as fresh-process with the checker processes off: one core verifies.
    "one-core": (True, {"_workers": 0}),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_replies_verified_per_second(benchmark: Any, injection: Injection, scenario: str) -> None:
    fresh, values = SCENARIOS[scenario]
    rounds = Rounds(injection, fresh, values)
    if scenario == "fresh-process":  # fill the disk cache once, untimed
        client, = rounds.setup()[0]
        rounds.collect(client)
        rounds.cpu.clear()
        rounds.budget.reset()
    try:
        result = benchmark.pedantic(rounds.collect, setup=rounds.setup, rounds=ROUNDS,
                                    warmup_rounds=0)
    finally:
        rounds.close()
    assert len(result.replies) == NODES, (result.error, result.rejected[:3])
    assert not result.rejected
    mean = benchmark.stats.stats.mean
    median = benchmark.stats.stats.median
    per_second = NODES / median
    extra = benchmark.extra_info
    extra.update({
        "nodes": NODES,
        "replies_per_second_median": round(per_second),
        "replies_per_second_mean": round(NODES / mean),
        # CPU of the collecting process only (its checker processes are not counted).
        "client_cpu_us_per_reply_median": round(sorted(rounds.cpu)[len(rounds.cpu) // 2]
                                                / NODES * 1e6, 1),
        **{f"raw_verify_per_second_{k}": round(v) for k, v in injection.raw_rates.items()},
        **{f"ratio_to_raw_{k}": round(per_second / v, 2)
           for k, v in injection.raw_rates.items()},
    })
    rounds.gate.record(extra)
    budget = rounds.budget.record(extra, "reply", NODES)
    # The rate the whole machine could reach if nothing but this work used its cores.
    extra["cpu_bound_replies_per_second"] = round(NODES / rounds.budget.floor_s())
    raw = ", ".join(f"{k} {v:,.0f}/s" for k, v in injection.raw_rates.items())
    print(f"\n{scenario}: {per_second:,.0f} verified replies/s at the client (median of "
          f"{ROUNDS}, N={NODES}), {extra['client_cpu_us_per_reply_median']} µs CPU per reply; "
          f"raw ed25519 verify on one core: {raw}\n  {budget}: at most "
          f"{extra['cpu_bound_replies_per_second']:,} replies/s here")
