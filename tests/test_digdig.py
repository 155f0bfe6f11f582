"""digdig against a real BIND9 on loopback."""

import socket
import time

import dns.flags
import dns.rdatatype
import pytest

from digaas import digdig


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_soa_query_reads_serial(bind, unique_zone, address):
    bind.add_zone(unique_zone, serial=4242)

    answer = digdig.query(address, bind.port, unique_zone, dns.rdatatype.SOA, 2.0)

    assert answer.failure is None
    assert answer.rcode == "NOERROR"
    assert answer.authoritative
    assert digdig.find_soa_serial(answer.response, unique_zone) == 4242


def test_query_clears_recursion_desired():
    query = digdig.make_query("example.com.", dns.rdatatype.SOA)

    assert not query.flags & dns.flags.RD


def test_unserved_zone_is_refused(bind, unique_zone):
    answer = digdig.query("127.0.0.1", bind.port, unique_zone, dns.rdatatype.SOA, 2.0)

    assert answer.rcode == "REFUSED"
    assert digdig.find_soa_serial(answer.response, unique_zone) is None


def test_silent_port_times_out():
    # A bound UDP socket that never replies.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]

        started = time.monotonic()
        answer = digdig.query("127.0.0.1", port, "example.com.", dns.rdatatype.SOA, 0.3)
        elapsed = time.monotonic() - started

    assert answer.response is None
    assert answer.failure == "timeout"
    assert answer.rcode is None
    assert elapsed >= 0.3
    assert answer.rtt_seconds >= 0.3


def test_answer_times_are_wall_clock(bind, unique_zone):
    bind.add_zone(unique_zone)
    before = time.time()

    answer = digdig.query("127.0.0.1", bind.port, unique_zone, dns.rdatatype.SOA, 2.0)

    assert before <= answer.received_at <= time.time()
    assert 0 < answer.rtt_seconds < 2.0
