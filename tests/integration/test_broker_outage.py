"""A RabbitMQ that goes away and comes back: daemons must reconnect by themselves, and
clients must fail fast and clearly. Each test gets a RabbitMQ node of its own
(``private_rabbitmq``) so stopping it disturbs nobody.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from orch_integration import (
    BROKERS,
    DEFAULT_NODES,
    Fleet,
    FleetFactory,
    clean_environment,
    client_security,
    identity_args,
    new_collective,
    orch_argv,
)
from private_brokers import PrivateRabbitMQ, PrivateRedis, StallingAMQPProxy

from orch.testing import wait_until
from orch.transports.kombu import BROKER_WAIT, CLOSE_WAIT, CONNECT_TIMEOUT, KombuTransport
from orch.transports.kombu_client import FAILOVER_TIMEOUT, KombuClientChannel

pytestmark = pytest.mark.integration

RECOVERY_TIMEOUT = 60.0


def senders(document: dict[str, object]) -> set[str]:
    replies = document["replies"]
    assert isinstance(replies, list)
    return {reply["sender"] for reply in replies}


def ping_all(fleet: Fleet) -> tuple[bool, str]:
    result = fleet.run_orch("ping", *identity_args(fleet.alive()), "--json", timeout=30)
    ok = result.rc == 0 and senders(result.json()) == set(fleet.alive())
    return ok, result.describe()


def test_daemons_serve_again_after_broker_restart(
    private_rabbitmq: PrivateRabbitMQ, fleet_factory: FleetFactory
) -> None:
    broker = private_rabbitmq
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:2], label="restart")
    pids = {name: daemon.pid for name, daemon in fleet.daemons.items()}
    ok, report = ping_all(fleet)
    assert ok, report
    consuming = {name: d.log().count("consuming for") for name, d in fleet.daemons.items()}

    broker.stop()
    wait_until(lambda: all("unavailable" in d.log() for d in fleet.daemons.values()), 30,
             "every daemon to notice that the broker is gone")

    # A client while the broker is down: a prompt, clear failure that names the broker.
    for command in (["ping"], ["find"], ["rpc", "rpcutil", "ping"], ["facts", "role"]):
        result = fleet.run_orch(*command, timeout=30)
        assert result.rc != 0, f"orch {' '.join(command)}: {result.describe()}"
        assert broker.address in result.stderr, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        assert result.elapsed < 15, f"orch {' '.join(command)} took {result.elapsed:.1f}s"
    assert all(d.running() for d in fleet.daemons.values()), "a daemon died with the broker"

    broker.start()
    wait_until(lambda: all(d.log().count("consuming for") > consuming[name]
                         for name, d in fleet.daemons.items()),
             RECOVERY_TIMEOUT, "every daemon to consume again after the broker restart")
    # Consuming again: the very first request must be answered (no reply lost on a stale
    # reply connection).
    first_ok, first_report = ping_all(fleet)
    wait_until(lambda: ping_all(fleet)[0], RECOVERY_TIMEOUT,
             "the daemons to answer pings again after the broker restart")
    assert first_ok, ("the first ping after the daemons reconnected was not answered by "
                      "every node (later pings were):\n" + first_report)

    assert {name: d.pid for name, d in fleet.daemons.items()} == pids
    assert all(d.running() for d in fleet.daemons.values())
    # Broadcasts work again too (the agent bindings were re-declared).
    rc, stdout, stderr = fleet.run_orch("find")
    assert rc == 0, stderr
    assert stdout.splitlines() == fleet.alive()


@pytest.mark.parametrize("output", ["json", "text"])
def test_client_loses_broker_mid_call(
    private_rabbitmq: PrivateRabbitMQ, fleet_factory: FleetFactory, output: str
) -> None:
    broker = private_rabbitmq
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:2], label="midcall", log_level="debug")
    names = fleet.alive()
    ghost = "ghost-never-answers"
    marker = "running rpcutil.ping"
    seen = {name: d.log().count(marker) for name, d in fleet.daemons.items()}
    argv = [*orch_argv(), "rpc", "rpcutil", "ping", *identity_args([*names, ghost]),
            "--timeout", "120", *(["--json"] if output == "json" else [])]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=clean_environment({**client_security(), "ORCH_BROKER": broker.url,
                                          "ORCH_COLLECTIVE": fleet.collective}),
    )
    try:
        wait_until(lambda: all(fleet.daemons[n].log().count(marker) > seen[n] for n in names),
                 20, "both daemons to run the ping")
        # The replies leave right after the action ran; let them reach the client. (Nothing
        # observable marks their arrival: the client prints only at the end.)
        time.sleep(1.0)
        assert proc.poll() is None, "the call ended before the broker went away"
        stopped = time.monotonic()
        broker.stop()
        stdout, stderr = proc.communicate(timeout=60)
        ended_after = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    report = f"exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert ended_after < 20, f"the call went on for {ended_after:.1f}s after the broker stopped"
    assert proc.returncode == 1, report
    assert "Traceback" not in stderr, report
    if output == "json":
        document = json.loads(stdout)
        assert document["error"], report
        assert broker.address in document["error"], report
        assert senders(document) == set(names), report
        assert document["missing"] == [ghost], report
    else:
        assert f"Finished processing {len(names)} / {len(names) + 1} hosts" in stdout, report
        assert stdout.split("No response from 1 node(s):", 1)[1].split()[0] == ghost, report
        assert "Error:" in stdout and broker.address in stdout, report


#: How long after its timeout a call may end once its broker froze, and how long a daemon
#: may take to stop on SIGTERM while it is frozen. RabbitMQ: closing waits at most CLOSE_WAIT
#: for close-ok. Redis: every command is a round trip of up to BROKER_WAIT, and how many a
#: client or daemon is in when the broker freezes, or makes while closing, depends on the
#: moment (kombu's housekeeping inside a wait for replies, a failover's reconnect, reading
#: the pending BRPOP and deleting an auto-deleted queue on close). Bounded either way; the
#: old behaviour, waiting for ever, is what these catch.
FROZEN_BOUNDS = {"rabbitmq": (CLOSE_WAIT + 10, 15.0),
                 "redis": (6 * BROKER_WAIT, 4 * BROKER_WAIT)}


@pytest.fixture(params=sorted(FROZEN_BOUNDS))
def freezable_broker(request: pytest.FixtureRequest) -> PrivateRabbitMQ | PrivateRedis:
    """A private broker of this test that :meth:`freeze` stops answering (SIGSTOP)."""
    broker = request.getfixturevalue(f"private_{request.param}")
    assert isinstance(broker, (PrivateRabbitMQ, PrivateRedis))
    return broker


def test_a_broker_that_freezes_mid_call_ends_the_call_and_the_daemons_stop(
    freezable_broker: PrivateRabbitMQ | PrivateRedis, fleet_factory: FleetFactory
) -> None:
    """A hung broker (or a link dropping every packet) answers nothing and closes nothing:
    the call still ends within its timeout plus a bounded close, reports the node it did not
    hear from, and the daemons still stop on SIGTERM — no wait on the broker is unbounded."""
    broker = freezable_broker
    overrun, stop_bound = FROZEN_BOUNDS[
        "redis" if isinstance(broker, PrivateRedis) else "rabbitmq"]
    fleet = fleet_factory(broker.url, DEFAULT_NODES[:1], label="freeze", log_level="debug")
    [name] = fleet.alive()
    daemon = fleet.daemons[name]
    ghost = "ghost-never-answers"
    marker = "running rpcutil.ping"
    seen = daemon.log().count(marker)
    timeout = 4
    proc = fleet.start_orch("rpc", "rpcutil", "ping", *identity_args([name, ghost]),
                            "--timeout", str(timeout), "--json")
    try:
        wait_until(lambda: daemon.log().count(marker) > seen, 20, "the daemon to run the ping")
        broker.freeze()
        frozen = time.monotonic()
        stdout, stderr = proc.communicate(timeout=timeout + overrun + 60)
        ended_after = time.monotonic() - frozen
        report = f"exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        assert "Traceback" not in stderr, report
        assert proc.returncode == 1, report
        assert ghost in json.loads(stdout)["missing"], report
        assert ended_after < timeout + overrun, (
            f"the call ended {ended_after:.1f}s after the broker froze\n{report}")

        # With the broker still frozen, SIGTERM stops the daemon by itself: closing its
        # connections must not wait for an answer that never comes.
        daemon.terminate()
        daemon.wait_stopped(stop_bound)
        assert not daemon.needed_sigkill, (
            f"{name} ignored SIGTERM for {stop_bound:g}s\n{fleet.logs()}")
        assert daemon.proc is not None and daemon.proc.returncode == 0, fleet.logs()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        broker.thaw()


def test_a_hung_member_of_the_broker_list_does_not_keep_a_client_from_the_next(
    private_rabbitmq: PrivateRabbitMQ,
) -> None:
    """A member that accepts connections but never answers (frozen here; an overloaded or
    half-dead broker alike) gets its share of the connect time, then the client goes on to
    the healthy member. Before, a client that started at the hung member spent the whole
    connect timeout there and failed with "cannot reach the broker … timed out", though the
    other member was fine (5 commands of 6 with the start member drawn at random)."""
    healthy = BROKERS["rabbitmq"]
    private_rabbitmq.freeze()
    transport = KombuTransport([private_rabbitmq.url, healthy])
    transport.urls = [private_rabbitmq.url, healthy]  # the hung member first, not at random
    started = time.monotonic()
    channel = transport.open_client(new_collective("hung"), CONNECT_TIMEOUT)
    elapsed = time.monotonic() - started
    try:
        uri = channel._conn.as_uri()  # type: ignore[attr-defined]
        assert uri.rsplit(":", 1)[1].split("/")[0] == healthy.rsplit(":", 1)[1].split("/")[0]
        assert elapsed < CONNECT_TIMEOUT + 1, f"{elapsed:.1f}s to reach the healthy member"
    finally:
        channel.close()
        transport.close()



def _port(url: str) -> str:
    return url.rsplit("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[1]


def _connected_port(channel: object) -> str:
    return _port(channel._conn.as_uri())  # type: ignore[attr-defined]


def _delivers(channel: object, broker: str) -> bool:
    """True if a message published at ``broker`` to the channel's reply queue arrives."""
    import kombu

    assert isinstance(channel, KombuClientChannel)
    with kombu.Connection(broker, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.Producer().publish(b"barrier", routing_key=channel.reply_to, retry=False)
    return channel.receive(CONNECT_TIMEOUT) == b"barrier"


def test_a_member_that_stalls_after_the_handshake_does_not_keep_a_client_from_the_next(
) -> None:
    """A member that completes the AMQP handshake and then stops answering (a proxy in
    front of the suite's RabbitMQ drops everything after it) gets its share of the connect
    time. Before, the client's channel open waited the socket's whole ``BROKER_WAIT`` (10 s)
    there and failed, the healthy member untried."""
    healthy = BROKERS["rabbitmq"]
    proxy = StallingAMQPProxy(healthy)
    transport = KombuTransport([proxy.url, healthy])
    transport.urls = [proxy.url, healthy]  # the stalling member first, not at random
    try:
        started = time.monotonic()
        channel = transport.open_client(new_collective("stall"), CONNECT_TIMEOUT)
        elapsed = time.monotonic() - started
        try:
            assert proxy.connections, "the stalling member was never tried"
            assert _connected_port(channel) == _port(healthy)
            assert elapsed < CONNECT_TIMEOUT + 1, f"{elapsed:.1f}s to reach the healthy member"
            assert _delivers(channel, healthy)
        finally:
            channel.close()
    finally:
        transport.close()
        proxy.close()


def test_a_failover_past_a_stalling_member_ends_within_its_timeout() -> None:
    """The member a client is on dies mid-call; the next one accepts and stalls, the one
    after is healthy. The failover gives the stalling member its share and goes on, well
    within ``FAILOVER_TIMEOUT``; the reply queue works on the healthy member. Before, the
    stalling member held the failover for ``BROKER_WAIT`` (10 s) and the call failed with
    "no broker of the list answered within 5s" though a healthy member was listed."""
    healthy = BROKERS["rabbitmq"]
    dying = StallingAMQPProxy(healthy, stall=False)
    stalling = StallingAMQPProxy(healthy)
    members = [dying.url, stalling.url, healthy]
    transport = KombuTransport(members)
    transport.urls = members
    try:
        channel = transport.open_client(new_collective("failover"), CONNECT_TIMEOUT)
        try:
            assert isinstance(channel, KombuClientChannel)
            assert _connected_port(channel) == str(dying.port)
            dying.cut()
            started = time.monotonic()
            while channel.failovers == 0 and time.monotonic() - started < 30:
                channel.receive(0.2)
            elapsed = time.monotonic() - started
            assert channel.failovers == 1
            assert stalling.connections, "the stalling member was never tried"
            assert _connected_port(channel) == _port(healthy)
            assert elapsed < FAILOVER_TIMEOUT, f"the failover took {elapsed:.1f}s"
            assert _delivers(channel, healthy)
        finally:
            channel.close()
    finally:
        transport.close()
        dying.close()
        stalling.close()


def test_a_failover_moves_to_a_new_reply_queue_and_sends_the_calls_in_flight_again() -> None:
    """A reply queue declared again under its old name right after a cluster member died can
    be deleted with the dead member's queues (the survivors delete them by name): after a
    failover the client consumes a queue of a new name, which later requests name, and the
    requests still in flight are published again."""
    import kombu

    from orch.core.config import load_settings
    from orch.transports.kombu import node_queue_name

    broker = BROKERS["rabbitmq"]
    collective = new_collective("failover-name")
    node_queue = node_queue_name(collective, "node-1")
    transport = KombuTransport([broker], load_settings(None, {}, environ={}))
    channel = transport.open_client(collective, CONNECT_TIMEOUT)
    with kombu.Connection(broker, connect_timeout=CONNECT_TIMEOUT) as conn:
        helper = conn.default_channel
        helper.queue_declare(node_queue, auto_delete=False, arguments={"x-expires": 60_000})
        try:
            assert isinstance(channel, KombuClientChannel)
            before = channel.reply_to
            channel.direct("node-1", b"in flight", ttl=30.0)
            channel._failover(ConnectionResetError("the member died"))
            assert channel.failovers == 1
            assert channel.reply_to != before
            assert channel.reply_to.startswith(before[:-32])  # same collective prefix
            assert _delivers(channel, broker)  # the new queue is consumed
            # The request in flight went out again: the node's queue holds both copies.
            wait_until(lambda: helper.queue_declare(node_queue, passive=True).message_count
                       == 2, CONNECT_TIMEOUT, "the request in flight to be published again")
        finally:
            channel.close()
            helper.queue_delete(node_queue)
