"""The real service polling a fake nameserver that drops, delays, floods or misdirects replies.

test_service_faults.py covers single bad replies (wrong id, garbage, no AA,
SERVFAIL, truncation). Here the fake nameserver keeps misbehaving for the
whole poll, and many polls run at once. The last test reads the service log
for greenlet failures left by all the others, so it must stay at the end.

Where a poll is expected to end ERROR, the tests use a frequency longer than
the query timeout, so each query ends before the next slot. The counts in the
error message then follow from the fake nameserver's script alone.
"""

import collections
import concurrent.futures
import re
import socket
import struct
import threading
import time

import dns.message
import dns.name
import dns.rdatatype
import pytest
import requests

from digaas import digdig
from digaas.localservice import LocalService
from fakens import FakeNameserver, FromAddress, RawTCP, response, soa_rrset

ZONE = "hostile.test."
QUERY_TIMEOUT_SECONDS = 0.3
SETTINGS = {"MIN_FREQUENCY_SECONDS": 0.05, "DNS_QUERY_TIMEOUT_SECONDS": QUERY_TIMEOUT_SECONDS}

# The serial the polls wait for, and one that does not meet their condition.
EXPECTED_SERIAL = 5
LOWER_SERIAL = 4

# How long a test waits after a poll's deadline for its final status.
DONE_GRACE_SECONDS = 15

# Not a DNS message: shorter than a DNS header.
GARBAGE = b"\x00\x01garbage"

TCP_CUT_ERROR = "network error: connection closed before the whole response arrived"

# Log lines that mean a greenlet, a request handler or the server failed:
# digaas's own ERROR and CRITICAL lines ("%(asctime)s %(process)d
# %(levelname)s ..."), tracebacks, and gevent's report of a greenlet that
# raised ("<Greenlet ...> failed with KeyError").
FAILURE_LOG_PATTERNS = [
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (ERROR|CRITICAL) "),
    re.compile(r"Traceback"),
    re.compile(r"greenlet died"),
    re.compile(r"Greenlet.* failed with "),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with LocalService(tmp_path_factory.mktemp("hostile"), settings=SETTINGS) as server:
        yield server


@pytest.fixture
def fake():
    with FakeNameserver() as server:
        yield server


def soa_reply(query, serial=EXPECTED_SERIAL):
    return response(query, answer=[soa_rrset(query.question[0].name, serial)])


def request_body(fake, **changes):
    body = {"nameserver": fake.host, "port": fake.port, "zone_name": ZONE,
            "serial": EXPECTED_SERIAL, "start_time": time.time(), "timeout": 1.0,
            "frequency": 0.4, "condition": "serial_not_lower"}
    body.update(changes)
    return body


def poll(service, fake, **changes):
    """Post a poll request and return its record once it has left ACCEPTED."""
    body = request_body(fake, **changes)
    accepted = service.post(body)
    assert accepted.status_code == 202, accepted.text
    return service.wait_until_done(accepted.json()["id"],
                                   timeout_seconds=body["timeout"] + DONE_GRACE_SECONDS)


def where(record):
    """Return how a timeout message names the request's nameserver."""
    return f"nameserver {record['nameserver']} port {record['port']}"


def every_third_answered(serial):
    """Build a handler that replies to queries 3, 6, 9... with that serial and drops the others."""
    lock = threading.Lock()
    received = 0

    def handler(query, protocol):
        nonlocal received
        with lock:
            received += 1
            number = received
        if number % 3 == 0:
            return [soa_reply(query, serial)]
        return []

    return handler


def test_drops_then_answer_completes(service, fake):
    fake.handler = every_third_answered(EXPECTED_SERIAL)

    record = poll(service, fake, timeout=3.0)

    assert record["status"] == "COMPLETED"
    assert record["queries"] == 3
    assert len(fake.queries) == 3
    assert record["last_serial"] == EXPECTED_SERIAL
    assert record["error"] is None


def test_drops_counted_when_error(service, fake):
    fake.handler = every_third_answered(LOWER_SERIAL)

    record = poll(service, fake, timeout=1.4)

    queries = record["queries"]
    dropped = queries - queries // 3
    assert record["status"] == "ERROR"
    assert queries == len(fake.queries)
    assert queries >= 3
    assert record["error"] == (f"timed out after 1.4 s: {queries} queries to {where(record)},"
                               f" {dropped} x timeout, last serial {LOWER_SERIAL}")


def test_delay_over_query_timeout(service, fake):
    fake.handler = lambda query, protocol: [2 * QUERY_TIMEOUT_SECONDS, soa_reply(query)]

    record = poll(service, fake)

    queries = record["queries"]
    assert record["status"] == "ERROR"
    assert queries == len(fake.queries)
    assert record["last_rcode"] is None
    assert record["error"] == (f"timed out after 1.0 s: {queries} queries to {where(record)},"
                               f" {queries} x timeout")


def test_delay_under_query_timeout(service, fake):
    fake.handler = lambda query, protocol: [QUERY_TIMEOUT_SECONDS / 3, soa_reply(query)]

    record = poll(service, fake)

    assert record["status"] == "COMPLETED"
    assert record["queries"] == 1
    assert record["last_serial"] == EXPECTED_SERIAL


def test_fake_replies_from_other_address(fake):
    # An unconnected socket receives datagrams from any source, so it shows
    # where the reply came from.
    fake.handler = lambda query, protocol: [FromAddress("127.0.0.2", soa_reply(query))]
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(query.to_wire(), (fake.host, fake.port))
        wire, source = client.recvfrom(65535)

    assert source == ("127.0.0.2", fake.port)
    assert dns.message.from_wire(wire).id == query.id


@pytest.mark.parametrize("source_port", [None, 0], ids=["same port", "other port"])
def test_reply_from_other_address(service, fake, source_port):
    # digaas's UDP socket is connected to 127.0.0.1, so the kernel drops the
    # reply from 127.0.0.2 before digaas could count it as ignored.
    fake.handler = lambda query, protocol: [
        FromAddress("127.0.0.2", soa_reply(query), port=source_port)]

    record = poll(service, fake)

    queries = record["queries"]
    assert record["status"] == "ERROR"
    assert queries == len(fake.queries)
    assert fake.errors == []
    assert record["error"] == (f"timed out after 1.0 s: {queries} queries to {where(record)},"
                               f" {queries} x timeout")


def flood_handler(wrong_replies, burst_size, burst_gap_seconds=0.0):
    """Build a handler that sends wrong-id copies of the right reply, then the right reply.

    The wrong replies go out in bursts of burst_size with burst_gap_seconds between them.
    """
    def handler(query, protocol):
        right = soa_reply(query).to_wire()
        items = []
        for offset in range(1, wrong_replies + 1):
            items.append(struct.pack("!H", (query.id + offset) % 65536) + right[2:])
            if offset % burst_size == 0 and burst_gap_seconds:
                items.append(burst_gap_seconds)
        items.append(right)
        return items

    return handler


def test_paced_flood_of_wrong_ids(service, fake):
    # Bursts of 100 fit the socket receive buffer while digaas reads the
    # previous ones. Linux's net.core.rmem_default, often 212992 bytes, is
    # room for about 256 of these replies.
    fake.handler = flood_handler(500, burst_size=100, burst_gap_seconds=0.03)

    record = poll(service, fake, timeout=3.0)

    assert record["status"] == "COMPLETED"
    assert record["last_serial"] == EXPECTED_SERIAL


def _max_receive_buffer_bytes():
    with open("/proc/sys/net/core/rmem_max") as handle:
        return int(handle.read())


@pytest.mark.skipif(_max_receive_buffer_bytes() < digdig.UDP_RECEIVE_BUFFER_BYTES, reason=(
    "net.core.rmem_max caps digdig's UDP receive buffer below what a back-to-back flood"
    " of 500 replies needs, so the kernel drops the right reply"))
def test_flood_of_wrong_ids(service, fake):
    fake.handler = flood_handler(500, burst_size=500)

    record = poll(service, fake)

    assert record["status"] == "COMPLETED", record["error"]
    assert record["queries"] == 1


def test_tcp_closed_mid_message(service, fake):
    # The length prefix announces 100 bytes, then 10 come and the connection closes.
    fake.handler = lambda query, protocol: [RawTCP(struct.pack("!H", 100) + b"x" * 10)]

    record = poll(service, fake, protocol="tcp")

    queries = record["queries"]
    assert record["status"] == "ERROR"
    assert queries == len(fake.queries)
    assert record["error"] == (f"timed out after 1.0 s: {queries} queries to {where(record)},"
                               f" {queries} x {TCP_CUT_ERROR}")


def test_service_healthy_after_tcp_cut(service):
    # Runs after test_tcp_closed_mid_message, on a well-behaved fake nameserver.
    with FakeNameserver() as healthy:
        healthy.serial = EXPECTED_SERIAL
        home = requests.get(service.url + "/", timeout=5)
        record = poll(service, healthy, timeout=3.0)

    assert home.status_code == 200
    assert record["status"] == "COMPLETED"
    assert record["queries"] == 1


class HalfGarbage:
    """Handler that sends garbage for every odd query of a zone, and a SOA for every even one.

    The SOA has EXPECTED_SERIAL for the zones in complete_zones and
    LOWER_SERIAL for the others, so only polls of those zones can complete.
    """

    def __init__(self, complete_zones):
        self.complete_zones = {dns.name.from_text(zone) for zone in complete_zones}
        self.received = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, query, protocol):
        zone = query.question[0].name
        with self._lock:
            self.received[zone] += 1
            number = self.received[zone]
        if number % 2 == 1:
            return [GARBAGE]
        serial = EXPECTED_SERIAL if zone in self.complete_zones else LOWER_SERIAL
        return [soa_reply(query, serial)]


def test_many_concurrent_polls(service, fake):
    zones = [f"z{index:03d}.{ZONE}" for index in range(200)]
    complete_zones = set(zones[::2])
    fake.handler = HalfGarbage(complete_zones)
    timeout = 3.0

    def post(zone):
        accepted = service.post(request_body(fake, zone_name=zone, timeout=timeout, frequency=0.1))
        assert accepted.status_code == 202, accepted.text
        return accepted.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        request_ids = list(pool.map(post, zones))
    records = [service.wait_until_done(request_id, timeout_seconds=timeout + DONE_GRACE_SECONDS)
               for request_id in request_ids]

    for zone, record in zip(zones, records):
        if zone in complete_zones:
            assert record["status"] == "COMPLETED", record
            # The first query of each zone gets garbage, so it cannot complete the poll.
            assert record["queries"] >= 2, record
            assert record["last_serial"] == EXPECTED_SERIAL, record
        else:
            assert record["status"] == "ERROR", record
            assert record["error"].startswith(
                f"timed out after {timeout} s: {record['queries']} queries to {where(record)}, "), record
            assert " x timeout" in record["error"], record
            assert "replies ignored" in record["error"], record
            assert record["error"].endswith(f"last serial {LOWER_SERIAL}"), record


def test_log_has_no_failures(service):
    # Must stay the last test of the module, because it checks what all the others left in the log.
    lines = service.log_path.read_text(errors="replace").splitlines()

    failures = [line for line in lines
                if any(pattern.search(line) for pattern in FAILURE_LOG_PATTERNS)]

    assert failures == []
