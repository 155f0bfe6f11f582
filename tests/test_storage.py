import json
import threading

import pytest
import redis

from digaas import latency
from digaas import model
from digaas import storage
from digaas import storage_redis
from digaas import storage_sqlite


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        opened = storage_sqlite.SqliteStorage(
            str(tmp_path / "digaas.sqlite3"), busy_timeout_seconds=5)
    else:
        request.getfixturevalue("redis_flushed")
        opened = storage_redis.RedisStorage(
            request.getfixturevalue("redis_url"), key_prefix="test")
    yield opened
    opened.close()


def make_request(**changes):
    values = dict(
        id="6f1c4c1e-8f0e-4d2b-9d5e-1f6b2d7c8a90", nameserver="::1", port=5300,
        zone_name="hello.com.", serial=4294967295, start_time=1421867419.123456789,
        timeout=7.3, frequency=1.2, condition=model.SERIAL_NOT_LOWER,
        accepted_at=1421867420.000001)
    values.update(changes)
    return model.PollRequest(**values)


def test_create_then_get_is_exact(backend):
    request = make_request()

    backend.create(request)
    stored = backend.get(request.id)

    assert stored == request
    assert type(stored.start_time) is float
    assert stored.start_time == 1421867419.123456789


def test_integer_start_time_stays_integer(backend):
    request = make_request(start_time=1421867419, timeout=7)

    backend.create(request)
    stored = backend.get(request.id)

    assert type(stored.start_time) is int
    assert type(stored.timeout) is int


def test_get_unknown_id(backend):
    assert backend.get("no-such-id") is None


def test_update_result_is_exact(backend):
    request = make_request()
    backend.create(request)

    request.status = model.COMPLETED
    request.duration = 0.1 + 0.2
    request.completed_at = 1421867419.423456789
    request.last_miss_at = 1421867419.3
    request.queries = 3
    request.last_rcode = "NOERROR"
    request.last_serial = 4294967295
    backend.update_result(request)

    assert backend.get(request.id) == request


def test_update_does_not_change_inputs(backend):
    request = make_request()
    backend.create(request)

    changed = make_request(zone_name="other.com.", accepted_at=5.0, status=model.ERROR,
                           error="timed out")
    backend.update_result(changed)
    stored = backend.get(request.id)
    text = json.loads(backend.get_json(request.id))

    assert stored.zone_name == text["zone_name"] == "hello.com."
    assert stored.accepted_at == text["accepted_at"] == request.accepted_at
    assert stored.status == text["status"] == model.ERROR
    assert stored.error == text["error"] == "timed out"


def test_redis_down_raises_storage_error():
    backend = storage_redis.RedisStorage("redis://:secret@127.0.0.1:1/0", key_prefix="x")

    with pytest.raises(storage.StorageError) as raised:
        backend.create(make_request())

    assert "store request failed" in str(raised.value)
    assert "secret" not in str(raised.value)
    assert isinstance(raised.value.__cause__, redis.RedisError)


def test_sqlite_unwritable_path_raises_storage_error(tmp_path):
    with pytest.raises(storage.StorageError) as raised:
        storage_sqlite.SqliteStorage(str(tmp_path / "missing" / "db.sqlite3"),
                                     busy_timeout_seconds=1)

    assert "missing" in str(raised.value)


def test_redact_password():
    assert (storage_redis.redact_password("redis://user:pw@host:6379/0")
            == "redis://user:***@host:6379/0")
    assert storage_redis.redact_password("redis://host/0") == "redis://host/0"


def store_table(backend):
    """Store six requests over two nameservers, conditions and statuses."""
    rows = [
        # id suffix, start_time, nameserver, condition, status, duration
        ("1", 100.0, "192.0.2.1", model.SERIAL_NOT_LOWER, model.COMPLETED, 1.5),
        ("2", 100.0, "192.0.2.2", model.SERIAL_NOT_LOWER, model.COMPLETED, 2.5),
        ("3", 150.5, "192.0.2.1", model.ZONE_REMOVED, model.ERROR, None),
        ("4", 199.999, "192.0.2.2", model.ZONE_REMOVED, model.COMPLETED, 0.25),
        ("5", 200.0, "192.0.2.1", model.SERIAL_NOT_LOWER, model.ACCEPTED, None),
        ("6", 50, "192.0.2.1", model.SERIAL_NOT_LOWER, model.COMPLETED, 9.0),
    ]
    for suffix, start_time, nameserver, condition, status, duration in rows:
        request = make_request(id=f"id-{suffix}", start_time=start_time, nameserver=nameserver,
                               condition=condition, status=status, duration=duration)
        backend.create(request)


def ids(requests):
    return [request.id for request in requests]


@pytest.mark.parametrize("query, expected", [
    (storage.RequestQuery(), ["id-6", "id-1", "id-2", "id-3", "id-4", "id-5"]),
    (storage.RequestQuery(start=100, end=200), ["id-1", "id-2", "id-3", "id-4"]),
    (storage.RequestQuery(start=100.0001, end=200.0001), ["id-3", "id-4", "id-5"]),
    (storage.RequestQuery(start=300, end=400), []),
    (storage.RequestQuery(status=model.COMPLETED), ["id-6", "id-1", "id-2", "id-4"]),
    (storage.RequestQuery(nameserver="192.0.2.2"), ["id-2", "id-4"]),
    (storage.RequestQuery(condition=model.ZONE_REMOVED), ["id-3", "id-4"]),
    (storage.RequestQuery(start=100, nameserver="192.0.2.1", status=model.ERROR), ["id-3"]),
    (storage.RequestQuery(limit=2), ["id-6", "id-1"]),
    (storage.RequestQuery(offset=2, limit=2), ["id-2", "id-3"]),
    (storage.RequestQuery(offset=5, limit=10), ["id-5"]),
    (storage.RequestQuery(nameserver="192.0.2.1", offset=1, limit=2), ["id-1", "id-3"]),
])
def test_iter_requests_selects(backend, query, expected):
    store_table(backend)

    assert ids(backend.iter_requests(query)) == expected


def test_iter_requests_returns_whole_records(backend):
    store_table(backend)

    first = next(iter(backend.iter_requests(storage.RequestQuery(start=100, end=101))))

    assert first == backend.get("id-1")


def test_iter_columns_reads_fields(backend):
    store_table(backend)

    rows = list(backend.iter_columns(storage.RequestQuery(status=model.COMPLETED),
                                     ("duration", "nameserver")))

    assert rows == [(9.0, "192.0.2.1"), (1.5, "192.0.2.1"), (2.5, "192.0.2.2"),
                    (0.25, "192.0.2.2")]


def test_redis_selection_skips_deleted_request(redis_url, redis_flushed):
    backend = storage_redis.RedisStorage(redis_url, key_prefix="test")
    store_table(backend)
    redis.Redis.from_url(redis_url).delete(backend._request_key("id-2"))

    selected = ids(backend.iter_requests(storage.RequestQuery()))

    assert selected == ["id-6", "id-1", "id-3", "id-4", "id-5"]
    backend.close()


def test_redis_selection_keeps_escaped_text(redis_url, redis_flushed):
    backend = storage_redis.RedisStorage(redis_url, key_prefix="test")
    request = make_request(zone_name='q\\"uote\u00e9.\u4f8b.', error='bad "reply",\n\tagain')
    backend.create(request)

    (stored,) = backend.iter_requests(storage.RequestQuery())

    assert stored == request
    backend.close()


def test_iter_columns_rejects_unknown_field(backend):
    with pytest.raises(ValueError):
        list(backend.iter_columns(storage.RequestQuery(), ("id; DROP TABLE requests",)))


def test_many_requests_stream_in_order(backend):
    for index in range(2500):
        backend.create(make_request(id=f"bulk-{index:05d}", start_time=1000 + index % 7))

    streamed = ids(backend.iter_requests(storage.RequestQuery()))

    assert len(streamed) == 2500
    assert streamed == sorted(streamed, key=lambda request_id: (int(request_id[5:]) % 7,
                                                               request_id))


def histogram(nameserver, bucket_start, rtts, timeouts=0):
    result = latency.Histogram(nameserver, bucket_start, timeouts=timeouts)
    for rtt in rtts:
        result.add(rtt)
    return result


def test_latency_adds_up(backend):
    backend.add_latency([histogram("192.0.2.1", 60, [0.001, 0.002], timeouts=1),
                         histogram("192.0.2.2", 60, [0.5])])
    backend.add_latency([histogram("192.0.2.1", 60, [0.0005, 0.001], timeouts=2),
                         histogram("192.0.2.1", 120, [], timeouts=4)])

    stored = {(item.nameserver, item.bucket_start): item for item in backend.iter_latency(0, 1000)}

    first = stored[("192.0.2.1", 60)]
    assert first.answered == 4
    assert first.timeouts == 3
    assert first.min_seconds == 0.0005
    assert first.max_seconds == 0.002
    assert first.counts[latency.bin_of(0.001)] == 2
    assert stored[("192.0.2.2", 60)].answered == 1
    assert stored[("192.0.2.1", 120)].timeouts == 4
    assert stored[("192.0.2.1", 120)].answered == 0
    assert len(stored) == 3


def test_latency_window_and_nameserver(backend):
    backend.add_latency([histogram("192.0.2.1", 60, [0.001]),
                         histogram("192.0.2.1", 120, [0.001]),
                         histogram("192.0.2.2", 120, [0.001])])

    window = [(item.nameserver, item.bucket_start) for item in backend.iter_latency(120, 180)]
    only_one = [(item.nameserver, item.bucket_start)
                for item in backend.iter_latency(0, 1000, nameserver="192.0.2.1")]

    assert sorted(window) == [("192.0.2.1", 120), ("192.0.2.2", 120)]
    assert sorted(only_one) == [("192.0.2.1", 60), ("192.0.2.1", 120)]


def test_iter_accepted_follows_status(backend):
    first = make_request(id="accepted-1")
    second = make_request(id="accepted-2")
    backend.create(first)
    backend.create(second)

    second.status = model.COMPLETED
    backend.update_result(second)

    assert [request.id for request in backend.iter_accepted()] == ["accepted-1"]


def test_sqlite_adds_missing_columns(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.sqlite3")
    old = storage_sqlite.SqliteStorage(path, busy_timeout_seconds=1)
    old.close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE requests DROP COLUMN owner")

    reopened = storage_sqlite.SqliteStorage(path, busy_timeout_seconds=1)
    reopened.create(make_request(owner="host:1"))

    assert reopened.get(make_request().id).owner == "host:1"


def test_sqlite_old_row_reads_columns(tmp_path):
    # A row that an older digaas wrote has no record_json, and a result
    # leaves it without one.
    backend = storage_sqlite.SqliteStorage(str(tmp_path / "old.sqlite3"), busy_timeout_seconds=1)
    request = make_request(error="bad \"reply\"")
    backend.create(request)
    backend._connection.execute("UPDATE requests SET record_json = NULL")
    assert backend.get_json(request.id) == request.to_json()

    request.status = model.COMPLETED
    request.duration = 0.25
    backend.update_result(request)

    assert backend.get_json(request.id) == request.to_json()
    assert backend._connection.execute("SELECT record_json FROM requests").fetchone() == (None,)
    backend.close()


def test_text_without_marker_is_rebuilt(backend):
    request = make_request()
    backend.create(request)
    damaged = b'{"id": "%s"}' % request.id.encode()
    if isinstance(backend, storage_sqlite.SqliteStorage):
        backend._connection.execute("UPDATE requests SET record_json = ?", (damaged,))
    else:
        backend._redis.set(backend._json_key(request.id), damaged)
    assert backend.get_json(request.id) == damaged

    request.status = model.ERROR
    request.error = "timed out"
    backend.update_result(request)

    assert backend.get_json(request.id) == request.to_json()


def test_update_unknown_request_raises(backend):
    with pytest.raises(storage.RequestNotFound) as raised:
        backend.update_result(make_request(id="never-stored"))

    assert "never-stored" in str(raised.value)


def test_get_json_matches_get(backend):
    request = make_request(error='bad "reply",\n\tagain \u00e9', duration=0.1 + 0.2)
    backend.create(request)

    text = backend.get_json(request.id)

    assert json.loads(text) == request.to_dict()
    assert text == json.dumps(request.to_dict()).encode() == request.to_json()

    request.status = model.COMPLETED
    request.duration = 1 / 3
    request.last_rcode = "NOERROR"
    backend.update_result(request)

    assert backend.get_json(request.id) == request.to_json()
    assert type(json.loads(text)["start_time"]) is float
    assert backend.get_json("no-such-id") is None


def test_redis_old_hash_gets_defaults(redis_url, redis_flushed):
    backend = storage_redis.RedisStorage(redis_url, key_prefix="test")
    request = make_request(owner="host:1", rate_limit_delay_seconds=0.5)
    backend.create(request)
    client = redis.Redis.from_url(redis_url)
    client.hdel(backend._request_key(request.id), "owner", "rate_limit_delay_seconds")
    client.delete(backend._json_key(request.id))
    client.close()

    stored = backend.get(request.id)

    assert stored.owner is None
    assert stored.rate_limit_delay_seconds == 0.0
    assert json.loads(backend.get_json(request.id))["rate_limit_delay_seconds"] == 0.0
    backend.close()


def test_redis_results_survive_script_flush(redis_url, redis_flushed):
    backend = storage_redis.RedisStorage(redis_url, key_prefix="test")
    request = make_request()
    backend.create(request)
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    client.close()

    request.status = model.COMPLETED
    request.duration = 2.5
    backend.update_result(request)

    assert backend.get(request.id) == request
    backend.close()


def test_sqlite_workers_open_new_file_together(tmp_path):
    # Workers that start at once all set up the same new file. Without the
    # retry, about one open in sixty failed with "database is locked".
    failures = []

    def open_storage(path, barrier):
        barrier.wait()
        try:
            storage_sqlite.SqliteStorage(path, busy_timeout_seconds=5).close()
        except storage.StorageError as error:
            failures.append(str(error))

    for attempt in range(30):
        path = str(tmp_path / f"new-{attempt}.sqlite3")
        barrier = threading.Barrier(6)
        openers = [threading.Thread(target=open_storage, args=(path, barrier)) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(timeout=30)

    assert failures == []
