"""The real service polling a fake nameserver that misbehaves on purpose."""

import itertools
import time

import dns.rcode
import pytest

from digaas.localservice import LocalService
from fakens import FakeNameserver, response, soa_rrset, with_id

ZONE = "faults.test."
SETTINGS = {"MIN_FREQUENCY_SECONDS": 0.05, "DNS_QUERY_TIMEOUT_SECONDS": 0.5}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with LocalService(tmp_path_factory.mktemp("faults"), settings=SETTINGS) as server:
        yield server


@pytest.fixture
def fake():
    with FakeNameserver() as server:
        yield server


def poll(service, fake, **changes):
    body = {"nameserver": fake.host, "port": fake.port, "zone_name": ZONE,
            "serial": 5, "start_time": time.time(), "timeout": 2, "frequency": 0.2,
            "condition": "serial_not_lower"}
    body.update(changes)
    accepted = service.post(body)
    assert accepted.status_code == 202, accepted.text
    return service.wait_until_done(accepted.json()["id"], timeout_seconds=15)


def test_wrong_id_then_answer(service, fake):
    fake.handler = lambda query, protocol: [
        with_id(response(query, answer=[soa_rrset(ZONE, 5)]), (query.id + 1) % 65536),
        response(query, answer=[soa_rrset(ZONE, 5)]),
    ]

    record = poll(service, fake)

    assert record["status"] == "COMPLETED"
    assert record["queries"] == 1


def test_garbage_then_answer(service, fake):
    fake.handler = lambda query, protocol: [
        b"\x00\x01garbage", response(query, answer=[soa_rrset(ZONE, 5)])]

    record = poll(service, fake)

    assert record["status"] == "COMPLETED"


def test_no_aa_never_completes(service, fake):
    fake.handler = lambda query, protocol: [
        response(query, aa=False, answer=[soa_rrset(ZONE, 5)])]

    record = poll(service, fake, timeout=0.5)

    assert record["status"] == "ERROR"
    assert record["last_rcode"] == "NOERROR"
    assert "3 answers without the AA flag" in record["error"]


def test_servfail_is_not_removed(service, fake):
    fake.handler = lambda query, protocol: [response(query, rcode=dns.rcode.SERVFAIL)]

    record = poll(service, fake, condition="zone_removed", serial=None, timeout=0.5)

    assert record["status"] == "ERROR"
    assert record["last_rcode"] == "SERVFAIL"
    assert "3 answered SERVFAIL" in record["error"]


def test_error_message_counts_everything(service, fake):
    # Two SERVFAIL answers, then silence.
    answered = itertools.count()
    fake.handler = lambda query, protocol: (
        [response(query, rcode=dns.rcode.SERVFAIL)] if next(answered) < 2 else [])

    record = poll(service, fake, timeout=2, frequency=0.7)

    assert record["error"] == (f"timed out after 2 s: 3 queries to nameserver {record['nameserver']}"
                               f" port {record['port']}, 2 answered SERVFAIL, 1 x timeout,"
                               " last rcode SERVFAIL")


def test_silence_and_garbage_counted(service, fake):
    fake.handler = lambda query, protocol: [b"\xff" * 7]

    record = poll(service, fake, timeout=1, frequency=0.5)

    assert record["status"] == "ERROR"
    assert record["last_rcode"] is None
    assert record["error"] == (f"timed out after 1 s: 2 queries to nameserver {record['nameserver']}"
                               f" port {record['port']}, 2 x timeout,"
                               " 2 replies ignored (unparsable, or another id or question)")


def test_truncated_udp_then_tcp(service, fake):
    def handler(query, protocol):
        if protocol == "udp":
            return [response(query, tc=True)]
        return [response(query, answer=[soa_rrset(ZONE, 5)])]

    fake.handler = handler

    record = poll(service, fake)

    assert record["status"] == "COMPLETED"
    assert [protocol for protocol, _ in fake.queries] == ["udp", "tcp"]


def test_ipv6_fake_nameserver(service):
    with FakeNameserver(host="::1") as fake:
        fake.serial = 5
        record = poll(service, fake)

    assert record["status"] == "COMPLETED"
    assert record["nameserver"] == "::1"
    assert record["last_serial"] == 5
