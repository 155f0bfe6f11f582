import pytest
import redis

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

    changed = make_request(zone_name="other.com.", status=model.ERROR, error="timed out")
    backend.update_result(changed)
    stored = backend.get(request.id)

    assert stored.zone_name == "hello.com."
    assert stored.status == model.ERROR
    assert stored.error == "timed out"


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
