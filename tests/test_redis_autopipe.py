"""The shared, batching Redis connection, against a real redis-server."""

import time

import gevent
import gevent.socket
import pytest
import redis

from digaas import redis_autopipe


class GeventConnection(redis.Connection):
    """A redis-py connection on a gevent socket, as in a monkey-patched uwsgi worker.

    The tests do not monkey-patch, and on a blocking socket a caller that
    waits for Redis would stop every other greenlet.
    """

    def _connect(self):
        sock = gevent.socket.create_connection((self.host, self.port),
                                               timeout=self.socket_connect_timeout)
        sock.settimeout(self.socket_timeout)
        return sock


def open_pipeline(url, socket_timeout_seconds=5.0):
    pool = redis.ConnectionPool.from_url(url, connection_class=GeventConnection,
                                         socket_timeout=socket_timeout_seconds,
                                         socket_connect_timeout=socket_timeout_seconds)
    return redis_autopipe.AutoPipeline(pool.connection_class(**pool.connection_kwargs))


def pause_clients(url, milliseconds):
    with redis.Redis.from_url(url) as client:
        client.client_pause(milliseconds)


def unpause_clients(url):
    with redis.Redis.from_url(url) as client:
        client.client_unpause()


def test_callers_get_their_own_replies(redis_flushed):
    pipeline = open_pipeline(redis_flushed)

    callers = [gevent.spawn(pipeline.execute, [("SET", f"key-{i}", i), ("GET", f"key-{i}")])
               for i in range(200)]
    gevent.joinall(callers, timeout=10, raise_error=True)

    assert [caller.value for caller in callers] == [[b"OK", str(i).encode()] for i in range(200)]
    pipeline.close()


def test_concurrent_callers_share_writes(redis_flushed):
    pipeline = open_pipeline(redis_flushed)

    callers = [gevent.spawn(pipeline.execute, [("INCR", "counter")]) for _ in range(200)]
    gevent.joinall(callers, timeout=10, raise_error=True)

    assert sorted(caller.value[0] for caller in callers) == list(range(1, 201))
    assert 1 <= pipeline.batches_sent < 200
    pipeline.close()


def test_gather_batches_ready_callers(redis_flushed):
    # Callers that become ready over several passes of the loop, as the
    # requests of concurrent HTTP clients do under uwsgi.
    pipeline = open_pipeline(redis_flushed)

    def call_later(number):
        for _ in range(number % 5):
            gevent.sleep(0)
        return pipeline.execute([("INCR", "counter")], gather=True)

    callers = [gevent.spawn(call_later, number) for number in range(50)]
    gevent.joinall(callers, timeout=10, raise_error=True)

    assert sorted(caller.value[0] for caller in callers) == list(range(1, 51))
    assert pipeline.batches_sent == 1
    pipeline.close()


def test_killed_gatherer_keeps_pipeline_working(redis_flushed):
    pipeline = open_pipeline(redis_flushed)
    busy = gevent.spawn(lambda: [gevent.sleep(0) for _ in range(100)])
    gatherer = gevent.spawn(pipeline.execute, [("SET", "gathered", 1)], gather=True)
    gevent.sleep(0)
    queued = gevent.spawn(pipeline.execute, [("GET", "gathered")])
    gevent.sleep(0)

    gatherer.kill()
    queued.join(timeout=5)
    busy.join(timeout=5)

    assert queued.value == [b"1"]
    assert pipeline.execute([("PING",)]) == [b"PONG"]
    pipeline.close()


def test_transactions_of_callers_stay_apart(redis_flushed):
    pipeline = open_pipeline(redis_flushed)

    def transaction(i):
        return pipeline.execute([("MULTI",), ("SET", "shared", i), ("GET", "shared"), ("EXEC",)])

    callers = [gevent.spawn(transaction, i) for i in range(100)]
    gevent.joinall(callers, timeout=10, raise_error=True)

    for i, caller in enumerate(callers):
        assert caller.value[-1] == [b"OK", str(i).encode()]
    pipeline.close()


def test_error_reply_is_returned_in_place(redis_flushed):
    pipeline = open_pipeline(redis_flushed)

    replies = pipeline.execute([("SET", "text", "a"), ("INCR", "text"), ("GET", "text")])

    assert replies[0] == b"OK"
    assert isinstance(replies[1], redis.ResponseError)
    assert "not an integer" in str(replies[1])
    assert replies[2] == b"a"
    pipeline.close()


def test_stopped_redis_raises_then_recovers(redis_process):
    pipeline = open_pipeline(redis_process.url, socket_timeout_seconds=1.0)
    assert pipeline.execute([("SET", "before", 1)]) == [b"OK"]

    redis_process.stop()
    with pytest.raises(redis.ConnectionError):
        pipeline.execute([("GET", "before")])

    redis_process.start()
    assert pipeline.execute([("SET", "after", 2), ("GET", "after")]) == [b"OK", b"2"]
    pipeline.close()


def test_slow_reply_times_out_then_recovers(redis_flushed):
    pipeline = open_pipeline(redis_flushed, socket_timeout_seconds=0.2)
    pause_clients(redis_flushed, 500)

    with pytest.raises(redis.TimeoutError):
        pipeline.execute([("PING",)])
    gevent.sleep(0.5)

    assert pipeline.execute([("PING",)]) == [b"PONG"]
    pipeline.close()


def test_killed_sender_hands_over_the_queue(redis_flushed):
    pipeline = open_pipeline(redis_flushed)
    pause_clients(redis_flushed, 300)
    sender = gevent.spawn(pipeline.execute, [("PING",)])
    gevent.sleep(0.05)
    queued = gevent.spawn(pipeline.execute, [("SET", "queued", 1), ("GET", "queued")])
    gevent.sleep(0.05)

    sender.kill()
    queued.join(timeout=5)

    assert queued.value == [b"OK", b"1"]
    assert pipeline.execute([("PING",)]) == [b"PONG"]
    pipeline.close()


def test_timeout_fails_queued_commands_too(redis_flushed):
    timeout_seconds = 0.3
    pipeline = open_pipeline(redis_flushed, socket_timeout_seconds=timeout_seconds)
    assert pipeline.execute([("PING",)]) == [b"PONG"]
    pause_clients(redis_flushed, 3000)
    failed_at = {}
    sender = gevent.spawn(pipeline.execute, [("PING",)])
    sender.link(lambda _: failed_at.setdefault("sender", time.monotonic()))
    gevent.sleep(0.05)
    queued = gevent.spawn(pipeline.execute, [("PING",)])
    queued.link(lambda _: failed_at.setdefault("queued", time.monotonic()))

    gevent.joinall([sender, queued], timeout=5)
    unpause_clients(redis_flushed)

    assert isinstance(sender.exception, redis.TimeoutError)
    assert isinstance(queued.exception, redis.TimeoutError)
    # The queued command failed with the batch in flight. Sent on a new
    # connection, it would have waited for a second timeout.
    assert failed_at["queued"] - failed_at["sender"] < timeout_seconds / 2
    pipeline.close()
