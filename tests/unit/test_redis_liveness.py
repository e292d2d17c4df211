"""The Redis sweep's decisions, on a stand-in for kombu's Redis channel (no broker).

The integration test (tests/integration/test_faults.py) runs it on a real Redis; these pin
what it may and may not remove.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from orch.core.transport import NodeBinding
from orch.transports.kombu import node_queue_name, request_exchange_name
from orch.transports.redis_liveness import RedisLiveness, alive_key

SEP = "\x06\x16"


class FakeRedis:
    """The few Redis commands the sweep uses, over dicts and sets."""

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {}
        self.keys: dict[str, Any] = {}

    def pipeline(self, transaction: bool = False) -> FakePipeline:
        return FakePipeline(self)

    def srandmember(self, key: str, count: int) -> list[bytes]:
        return [m.encode() for m in sorted(self.sets.get(key, set()))][:count]


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.results = redis, []  # type: ignore[var-annotated]

    def __enter__(self) -> FakePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: bytes, px: int) -> None:
        self.redis.keys[key] = value
        self.results.append(True)

    def sadd(self, key: str, *members: str) -> None:
        self.redis.sets.setdefault(key, set()).update(members)
        self.results.append(len(members))

    def srem(self, key: str, *members: str) -> None:
        self.redis.sets.get(key, set()).difference_update(members)
        self.results.append(len(members))

    def exists(self, key: str) -> None:
        self.results.append(int(key in self.redis.keys))

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.redis.keys.pop(key, None)
        self.results.append(len(keys))

    def execute(self) -> list[Any]:
        results, self.results = self.results, []
        return results


class TopicKind:
    def prepare_bind(self, queue: str, exchange: str, key: str,
                     args: Any) -> tuple[str, str, str]:
        return key, f"^{key}$", queue


class FakeChannel:
    keyprefix_queue = "_kombu.binding.%s"
    sep = SEP
    priority_steps = [0, 3, 6, 9]

    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis

    @contextlib.contextmanager
    def conn_or_acquire(self) -> Iterator[FakeRedis]:
        yield self.redis

    def typeof(self, exchange: str) -> TopicKind:
        return TopicKind()


def _liveness(redis: FakeRedis, *identities: str) -> RedisLiveness:
    bindings = [NodeBinding("c", name, ("rpcutil",), lambda raw: None) for name in identities]
    return RedisLiveness(FakeChannel(redis), bindings, 30.0,
                         lambda b: request_exchange_name(b.collective),
                         lambda b: node_queue_name(b.collective, b.identity))


def _member(identity: str, collective: str = "c") -> str:
    return SEP.join(["agent.rpcutil", "^agent.rpcutil$", node_queue_name(collective, identity)])


TABLE = f"_kombu.binding.{request_exchange_name('c')}"


def test_sweep_removes_only_nodes_nobody_keeps_alive() -> None:
    redis = FakeRedis()
    live = _liveness(redis, "up")
    live.refresh()
    redis.sets[TABLE].update({_member("dead"), SEP.join(["x", "x", "somebody.elses.queue"])})
    redis.keys[node_queue_name("c", "dead")] = [b"broadcast"] * 3
    assert live.sweep() == 1
    assert redis.sets[TABLE] == {_member("up"), SEP.join(["x", "x", "somebody.elses.queue"])}
    assert node_queue_name("c", "dead") not in redis.keys
    assert alive_key("c", "up") in redis.keys


def test_a_stalled_node_swept_by_a_peer_binds_itself_again() -> None:
    redis = FakeRedis()
    live = _liveness(redis, "slow")
    live.refresh()
    del redis.keys[alive_key("c", "slow")]  # its key lapsed while it was stalled
    assert _liveness(redis, "peer").sweep() == 1
    assert _member("slow") not in redis.sets[TABLE]
    live.refresh()
    assert _member("slow") in redis.sets[TABLE]


def test_tick_survives_a_broken_connection() -> None:
    class Broken(FakeChannel):
        @contextlib.contextmanager
        def conn_or_acquire(self) -> Iterator[FakeRedis]:
            raise ConnectionError("gone")
            yield self.redis  # pragma: no cover

    live = RedisLiveness(Broken(FakeRedis()), [], 30.0, lambda b: "", lambda b: "")
    live.tick(now=10**9)  # logged, not raised: the consuming loop notices by itself
