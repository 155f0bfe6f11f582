"""GroupCommit over a real sqlite storage, with concurrent greenlets."""

import gevent
import pytest

from digaas import groupcommit
from digaas import model
from digaas import storage
from digaas import storage_sqlite


def make_request(number):
    return model.PollRequest(id=f"group-{number:03d}", nameserver="127.0.0.1",
                             zone_name="g.test.", start_time=number, timeout=5, frequency=1,
                             condition=model.ZONE_EXISTS, accepted_at=1)


@pytest.fixture
def backend(tmp_path):
    opened = storage_sqlite.SqliteStorage(str(tmp_path / "group.sqlite3"), busy_timeout_seconds=5)
    yield opened
    opened.close()


def test_concurrent_creates_share_writes(backend):
    batch_sizes = []

    def create_many(requests, json_texts):
        batch_sizes.append(len(requests))
        backend.create_many(requests, json_texts)

    committer = groupcommit.GroupCommit(create_many)
    requests = [make_request(number) for number in range(50)]
    greenlets = [gevent.spawn(committer.create, request, request.to_json()) for request in requests]
    gevent.joinall(greenlets, timeout=10, raise_error=True)

    stored = [request.id for request in backend.iter_requests(storage.RequestQuery())]
    assert stored == [f"group-{number:03d}" for number in range(50)]
    assert sum(batch_sizes) == 50
    assert len(batch_sizes) < 50


def test_single_create_is_stored(backend):
    committer = groupcommit.GroupCommit(backend.create_many)

    request = make_request(7)
    committer.create(request, request.to_json())

    assert backend.get("group-007").start_time == 7
    assert backend.get_json("group-007") == request.to_json()


def test_failure_reaches_every_caller(backend):
    committer = groupcommit.GroupCommit(backend.create_many)
    backend.close()

    requests = [make_request(number) for number in range(5)]
    greenlets = [gevent.spawn(committer.create, request, request.to_json()) for request in requests]
    gevent.joinall(greenlets, timeout=10)

    for greenlet in greenlets:
        assert isinstance(greenlet.exception, storage.StorageError)


def test_creates_while_loop_busy_batch():
    # Under uwsgi the POSTs of concurrent clients reach create() over
    # several passes of a busy loop. Greenlets that yield a different
    # number of times before create() model those passes.
    batches = []

    def create_later(number):
        for _ in range(number * 10):
            gevent.sleep(0)
        committer.create(number, b"")

    committer = groupcommit.GroupCommit(lambda requests, json_texts: batches.append(requests))
    greenlets = [gevent.spawn(create_later, number) for number in range(8)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)

    assert sorted(number for batch in batches for number in batch) == list(range(8))
    assert len(batches) < 8


def test_lone_create_does_not_wait(monkeypatch):
    # With nothing else to run, the leader writes at once instead of waiting
    # for the longest gather, which this test makes 30 s.
    monkeypatch.setattr(groupcommit, "MAX_GATHER_SECONDS", 30.0)
    batches = []
    committer = groupcommit.GroupCommit(lambda requests, json_texts: batches.append(requests))

    creator = gevent.spawn(committer.create, 1, b"")
    creator.join(timeout=10)

    assert creator.successful()
    assert batches == [[1]]


def test_leader_returns_after_its_own_batch():
    # A write that waits for the storage, as a Redis round trip does, lets
    # POSTs queue meanwhile. The leader's client must not wait for them.
    writes = []

    def create_many_with_round_trip(requests, json_texts):
        writes.append(list(requests))
        gevent.sleep(0.01)

    committer = groupcommit.GroupCommit(create_many_with_round_trip)
    writes_when_leader_returned = []

    def lead():
        committer.create(0, b"")
        writes_when_leader_returned.append(len(writes))

    leader = gevent.spawn(lead)

    def post_steadily():
        followers = []
        for number in range(1, 60):
            followers.append(gevent.spawn(committer.create, number, b""))
            gevent.sleep(0.003)
        gevent.joinall(followers, timeout=10, raise_error=True)

    gevent.spawn(post_steadily).join(timeout=10)
    leader.join(timeout=10)

    assert leader.successful()
    assert writes_when_leader_returned == [1]
    assert sorted(number for batch in writes for number in batch) == list(range(60))
