"""digdig.query against a fake nameserver that misbehaves on purpose."""

import socket
import struct
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from digaas import digdig
from digaas.localbind import free_port
from fakens import STOP_TIMEOUT_SECONDS, FakeNameserver, RawTCP, response, soa_rrset, with_id

ZONE = "example.test."
TIMEOUT_SECONDS = 2.0
SHORT_TIMEOUT_SECONDS = 0.3


@pytest.fixture
def server():
    with FakeNameserver() as fake:
        yield fake


def query_fake(server, timeout_seconds=TIMEOUT_SECONDS, rdatatype=dns.rdatatype.SOA, protocol="udp"):
    return digdig.query(server.host, server.port, ZONE, rdatatype, timeout_seconds, protocol=protocol)


def right_reply(query, serial=7):
    return response(query, answer=[soa_rrset(ZONE, serial)])


def other_id(query, offset=1):
    return (query.id + offset) % 65536


def seen_protocols(server):
    return [protocol for protocol, _ in server.queries]


def test_wrong_id_is_ignored(server):
    server.handler = lambda query, protocol: [
        with_id(right_reply(query, serial=666), other_id(query)),
        right_reply(query),
    ]

    answer = query_fake(server)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 1


def test_wrong_question_is_ignored(server):
    def handler(query, protocol):
        other_query = dns.message.make_query("other.test.", dns.rdatatype.SOA)
        wrong = with_id(response(other_query, answer=[soa_rrset("other.test.", 666)]), query.id)
        return [wrong, right_reply(query)]

    server.handler = handler

    answer = query_fake(server)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 1


def test_echoed_query_is_ignored(server):
    # Same id and question, but QR is clear: a reflection, not a response.
    server.handler = lambda query, protocol: [query, right_reply(query)]

    answer = query_fake(server)

    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 1


def test_garbage_then_right_reply(server):
    server.handler = lambda query, protocol: [b"\x00\x01garbage", b"\x00\x01\x02\x03\x04", right_reply(query)]

    answer = query_fake(server)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 2


def test_bad_question_with_right_id(server):
    # A full header with the query's id and QR set, then a question that does not parse.
    def handler(query, protocol):
        header = struct.pack("!HHHHHH", query.id, 0x8400, 1, 0, 0, 0)
        return [header + b"\x3fshort", right_reply(query)]

    server.handler = handler

    answer = query_fake(server)

    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 1


def test_only_garbage_times_out(server):
    server.handler = lambda query, protocol: [b"\x00\x01garbage", b"\x00\x01\x02\x03\x04"]

    answer = query_fake(server, timeout_seconds=SHORT_TIMEOUT_SECONDS)

    assert answer.failure == "timeout"
    assert answer.response is None
    assert answer.ignored_replies == 2


def test_no_aa_is_not_authoritative(server):
    server.handler = lambda query, protocol: [response(query, aa=False, answer=[soa_rrset(ZONE, 7)])]

    answer = query_fake(server)

    assert answer.failure is None
    assert answer.response is not None
    assert answer.authoritative is False
    assert digdig.find_soa_serial(answer.response, ZONE) == 7


def test_servfail_rcode(server):
    server.handler = lambda query, protocol: [response(query, rcode=dns.rcode.SERVFAIL)]

    answer = query_fake(server)

    assert answer.failure is None
    assert answer.rcode == "SERVFAIL"


def test_truncated_udp_retries_tcp(server):
    def handler(query, protocol):
        if protocol == "udp":
            return [response(query, tc=True)]
        return [right_reply(query)]

    server.handler = handler

    answer = query_fake(server)

    assert answer.failure is None
    assert answer.protocol == "tcp"
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert seen_protocols(server) == ["udp", "tcp"]


def test_truncated_then_tcp_silent(server):
    def handler(query, protocol):
        if protocol == "udp":
            return [response(query, tc=True)]
        return []

    server.handler = handler

    answer = query_fake(server, timeout_seconds=SHORT_TIMEOUT_SECONDS)

    assert answer.failure == "timeout"
    assert answer.response is None


def test_tcp_protocol_skips_udp(server):
    answer = query_fake(server, protocol="tcp")

    assert answer.failure is None
    assert answer.protocol == "tcp"
    assert digdig.find_soa_serial(answer.response, ZONE) == 1
    assert seen_protocols(server) == ["tcp"]


def test_tcp_wrong_id_is_bad_response(server):
    server.handler = lambda query, protocol: [with_id(right_reply(query), other_id(query))]

    answer = query_fake(server, protocol="tcp")

    assert answer.response is None
    assert answer.failure.startswith("bad response")


def test_silence_times_out(server):
    server.handler = lambda query, protocol: []

    answer = query_fake(server, timeout_seconds=SHORT_TIMEOUT_SECONDS)

    assert answer.failure == "timeout"
    assert answer.response is None
    assert answer.rtt_seconds >= SHORT_TIMEOUT_SECONDS
    assert seen_protocols(server) == ["udp"]


def test_closed_udp_port_is_network_error():
    # Nothing is bound to the port, so loopback returns ICMP port
    # unreachable, which the connected UDP socket reports as ECONNREFUSED.
    port = free_port()

    answer = digdig.query("127.0.0.1", port, ZONE, dns.rdatatype.SOA, TIMEOUT_SECONDS)

    assert answer.response is None
    assert answer.failure.startswith("network error")


def test_tcp_closed_mid_message(server):
    # The length prefix announces 100 bytes, then 10 come and the connection closes.
    server.handler = lambda query, protocol: [RawTCP(struct.pack("!H", 100) + b"x" * 10)]

    answer = query_fake(server, protocol="tcp")

    assert answer.failure is not None
    assert answer.response is None


def test_short_delay_is_answered(server):
    server.handler = lambda query, protocol: [0.2, right_reply(query)]

    answer = query_fake(server)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.rtt_seconds >= 0.2


def test_long_delay_times_out(server):
    server.handler = lambda query, protocol: [3.0, right_reply(query)]

    answer = query_fake(server, timeout_seconds=SHORT_TIMEOUT_SECONDS)

    assert answer.failure == "timeout"
    assert answer.response is None


def test_flood_of_wrong_ids(server):
    def handler(query, protocol):
        wrong = [with_id(right_reply(query, serial=666), other_id(query, offset))
                 for offset in range(1, 51)]
        return [*wrong, right_reply(query)]

    server.handler = handler

    answer = query_fake(server)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 7
    assert answer.ignored_replies == 50


def test_ipv6_loopback_server():
    with FakeNameserver("::1") as server:
        server.serial = 9

        answer = digdig.query("::1", server.port, ZONE, dns.rdatatype.SOA, TIMEOUT_SECONDS)

    assert answer.failure is None
    assert digdig.find_soa_serial(answer.response, ZONE) == 9


def test_large_txt_over_tcp(server):
    # 20 strings of 250 bytes: about 5 KB, more than the 1232-byte EDNS payload.
    records = [(ZONE, 300, "TXT", f'"{index:03d}{"x" * 247}"') for index in range(20)]

    def handler(query, protocol):
        if protocol == "udp":
            return [response(query, tc=True)]
        return [response(query, answer=records)]

    server.handler = handler

    answer = query_fake(server, rdatatype=dns.rdatatype.TXT)

    assert answer.failure is None
    assert answer.protocol == "tcp"
    txt = digdig.find_rrset(answer.response, ZONE, dns.rdatatype.TXT)
    assert len(txt) == 20
    assert sum(len(string) for rdata in txt for string in rdata.strings) == 5000
    assert seen_protocols(server) == ["udp", "tcp"]


# The fake nameserver itself.


def test_fake_survives_unparsable_query(server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"not a dns message", (server.host, server.port))

    answer = query_fake(server)

    assert answer.failure is None
    assert len(server.unparsable_queries) == 1
    assert server.errors == []


def test_fake_serves_tcp_pipelining(server):
    queries = [digdig.make_query(ZONE, dns.rdatatype.SOA) for _ in range(2)]
    wire = b"".join(struct.pack("!H", len(q.to_wire())) + q.to_wire() for q in queries)

    with socket.create_connection((server.host, server.port), timeout=TIMEOUT_SECONDS) as client:
        client.sendall(wire)
        replies = [_read_tcp_message(client) for _ in queries]

    assert [reply.id for reply in replies] == [query.id for query in queries]
    assert seen_protocols(server) == ["tcp", "tcp"]


def test_fake_stop_cuts_delays():
    server = FakeNameserver().start()
    server.handler = lambda query, protocol: [60.0, response(query)]
    query_fake(server, timeout_seconds=0.1)

    started = time.monotonic()
    server.stop()
    stop_seconds = time.monotonic() - started

    # Without the cut, stop() would wait STOP_TIMEOUT_SECONDS for the worker.
    assert stop_seconds < STOP_TIMEOUT_SECONDS


def test_fake_rejects_other_hosts():
    with pytest.raises(ValueError):
        FakeNameserver("192.0.2.1")


def _read_tcp_message(sock):
    length = struct.unpack("!H", _read_exactly(sock, 2))[0]
    return dns.message.from_wire(_read_exactly(sock, length))


def _read_exactly(sock, byte_count):
    data = b""
    while len(data) < byte_count:
        chunk = sock.recv(byte_count - len(data))
        assert chunk, "connection closed before the whole message arrived"
        data += chunk
    return data
