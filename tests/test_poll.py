"""The poll engine in this process, against the session's real BIND9."""

import gc
import time

import gevent

from digaas import model
from digaas import poll
from digaas import storage_sqlite


def stored_requests(backend, bind, zone, count, **fields):
    """Store count ACCEPTED serial_not_lower requests for zone on bind and return them."""
    requests = [model.PollRequest(
        id=f"{zone}{index}", nameserver="127.0.0.1", port=bind.port, zone_name=zone,
        start_time=time.time(), condition=model.SERIAL_NOT_LOWER, accepted_at=time.time(),
        **fields) for index in range(count)]
    backend.create_many(requests)
    return requests


def wait_until(condition, timeout_seconds=10):
    deadline = time.monotonic() + timeout_seconds
    while not condition() and time.monotonic() < deadline:
        gevent.sleep(0.05)


def test_waiting_poll_tracked_objects(bind, unique_zone, tmp_path):
    # Full collections traverse every tracked object and stop the loop
    # meanwhile, so each waiting poll adds to every query's schedule lag.
    polls = 400
    bind.add_zone(unique_zone, serial=1)
    backend = storage_sqlite.SqliteStorage(str(tmp_path / "digaas.sqlite3"),
                                           busy_timeout_seconds=5)
    poller = poll.Poller(backend, dns_query_timeout_seconds=2)
    requests = stored_requests(backend, bind, unique_zone, polls, serial=2, timeout=60,
                               frequency=30)
    gevent.sleep(0)
    gc.collect()
    tracked_before = len(gc.get_objects())

    for request in requests:
        poller.start(request)
    wait_until(lambda: poller.queries_sent >= polls)
    gevent.sleep(0.1)
    gc.collect()
    tracked_per_poll = (len(gc.get_objects()) - tracked_before) / polls

    try:
        assert poller.queries_sent == polls
        assert all(request.status == model.ACCEPTED for request in requests)
        # The request, the poll, its timer and the timer's bound method,
        # with a little room for objects shared by all polls.
        assert tracked_per_poll < 4.5
    finally:
        poller.kill(timeout_seconds=5)
        backend.close()


def test_finished_poll_freed_without_gc(bind, unique_zone, tmp_path):
    # A finished poll in a reference cycle waits for a collection, and such
    # long-lived garbage makes the full collections that delay queries.
    bind.add_zone(unique_zone, serial=5)
    backend = storage_sqlite.SqliteStorage(str(tmp_path / "digaas.sqlite3"),
                                           busy_timeout_seconds=5)
    poller = poll.Poller(backend, dns_query_timeout_seconds=2)
    requests = stored_requests(backend, bind, unique_zone, 50, serial=5, timeout=10, frequency=1)

    gc.collect()
    gc.disable()
    try:
        for request in requests:
            poller.start(request)
        wait_until(lambda: len(poller) == 0)
        polls_left = sum(isinstance(tracked, poll.Poll) for tracked in gc.get_objects())
    finally:
        gc.enable()
        poller.kill(timeout_seconds=5)
        backend.close()

    assert all(request.status == model.COMPLETED for request in requests)
    assert polls_left == 0


def test_capped_loop_passes_run_every_poll(bind, unique_zone, tmp_path):
    # Polls whose first slots fall in one pass of the loop, beyond the cap
    # of steps per pass, send their queries in the next passes.
    polls = 100
    bind.add_zone(unique_zone, serial=1)
    backend = storage_sqlite.SqliteStorage(str(tmp_path / "digaas.sqlite3"),
                                           busy_timeout_seconds=5)
    poller = poll.Poller(backend, dns_query_timeout_seconds=2, max_steps_per_loop_pass=5)
    requests = stored_requests(backend, bind, unique_zone, polls, serial=2, timeout=60,
                               frequency=30)

    for request in requests:
        poller.start(request)
    wait_until(lambda: poller.queries_sent >= polls)

    try:
        assert poller.step_budget.deferred > 0
        assert poller.queries_sent == polls
        assert all(request.queries == 1 for request in requests)
        assert len(poller.step_budget) == 0
        assert poller.metrics()["steps_waiting"] == 0
        assert poller.metrics()["steps_deferred"] == poller.step_budget.deferred
    finally:
        poller.kill(timeout_seconds=5)
        backend.close()


def test_timeout_message_counts_queries():
    request = model.PollRequest(id="t", nameserver="127.0.0.1", zone_name="z.test.",
                                start_time=1, timeout=2, frequency=5,
                                condition=model.ZONE_EXISTS, accepted_at=1)

    request.queries = 1
    one_query_message = poll.describe_timeout(request, poll.Tally())
    request.queries = 3
    three_queries_message = poll.describe_timeout(request, poll.Tally())

    assert one_query_message == "timed out after 2 s: 1 query to nameserver 127.0.0.1 port 53"
    assert three_queries_message == "timed out after 2 s: 3 queries to nameserver 127.0.0.1 port 53"
