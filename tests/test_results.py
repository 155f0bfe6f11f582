"""ResultWriter against a Redis that is down, then up."""

import logging

from digaas import model
from digaas import results
from digaas import storage_redis
from redisproc import RedisProcess


def make_request(number):
    return model.PollRequest(
        id=f"result-{number}", nameserver="127.0.0.1", zone_name="r.test.", start_time=1,
        timeout=5, frequency=1, condition=model.ZONE_EXISTS, accepted_at=1,
        status=model.COMPLETED, duration=0.5)


def test_queue_bound_drops_with_log(tmp_path, caplog):
    server = RedisProcess(tmp_path)   # never started: connections are refused
    backend = storage_redis.RedisStorage(server.url, key_prefix="t", socket_timeout_seconds=1)
    writer = results.ResultWriter(backend, max_pending=2, retry_seconds=60)

    with caplog.at_level(logging.WARNING, logger="digaas.results"):
        for number in range(3):
            writer.submit(make_request(number))
    writer.stop()

    assert len(writer) == 2
    dropped = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(dropped) == 1
    assert "result-2: result dropped" in dropped[0]
    assert '"duration": 0.5' in dropped[0]


def test_flush_writes_in_order_when_back(tmp_path):
    server = RedisProcess(tmp_path)
    backend = storage_redis.RedisStorage(server.url, key_prefix="t", socket_timeout_seconds=1)
    writer = results.ResultWriter(backend, max_pending=10, retry_seconds=60)
    queued = [make_request(number) for number in range(3)]
    for request in queued:
        writer.submit(request)
    writer.stop()

    server.start()
    try:
        for request in queued:
            stored = model.PollRequest.from_dict({**request.to_dict(), "status": model.ACCEPTED,
                                                  "duration": None})
            backend.create(stored)
        remaining = writer.flush()
        read_back = [backend.get(request.id) for request in queued]
    finally:
        server.stop()

    assert remaining == 0
    assert [request.status for request in read_back] == [model.COMPLETED] * 3
    assert [request.duration for request in read_back] == [0.5] * 3
