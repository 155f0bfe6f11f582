"""The poll engine in this process, against the session's real BIND9."""

import gc
import time

import gevent

from digaas import model
from digaas import poll
from digaas import storage_sqlite

POLLS = 400


def test_waiting_polls_keep_few_objects_for_the_collector(bind, unique_zone, tmp_path):
    # Full collections traverse every tracked object and stop the loop
    # meanwhile, so each waiting poll adds to every query's schedule lag.
    bind.add_zone(unique_zone, serial=1)
    backend = storage_sqlite.SqliteStorage(str(tmp_path / "digaas.sqlite3"),
                                           busy_timeout_seconds=5)
    poller = poll.Poller(backend, dns_query_timeout_seconds=2)
    requests = [model.PollRequest(
        id=f"gc-{index}", nameserver="127.0.0.1", port=bind.port, zone_name=unique_zone,
        serial=2, start_time=time.time(), timeout=60, frequency=30,
        condition=model.SERIAL_NOT_LOWER, accepted_at=time.time()) for index in range(POLLS)]
    backend.create_many(requests)
    gevent.sleep(0)
    gc.collect()
    tracked_before = len(gc.get_objects())

    for request in requests:
        poller.start(request)
    deadline = time.monotonic() + 10
    while poller.queries_sent < POLLS and time.monotonic() < deadline:
        gevent.sleep(0.05)
    gevent.sleep(0.1)
    gc.collect()
    tracked_per_poll = (len(gc.get_objects()) - tracked_before) / POLLS

    try:
        assert poller.queries_sent == POLLS
        assert all(request.status == model.ACCEPTED for request in requests)
        # The request, the poll, its timer and the timer's bound method,
        # with a little room for objects shared by all polls.
        assert tracked_per_poll < 4.5
    finally:
        poller.kill(timeout_seconds=5)
        backend.close()
