"""conditions.evaluate on answers from a real BIND9, and serial arithmetic."""

import dns.rdatatype
import pytest

from digaas import conditions
from digaas import digdig
from digaas import model


def make_request(zone, condition, serial=None, **record_fields):
    return model.PollRequest(id="r", nameserver="127.0.0.1", zone_name=zone,
                             start_time=0, timeout=5, frequency=1,
                             condition=condition, serial=serial, accepted_at=0,
                             **record_fields)


def soa_answer(bind, zone):
    return digdig.query("127.0.0.1", bind.port, zone, dns.rdatatype.SOA, 2.0)


def evaluate_on_bind(bind, request):
    qname, rdatatype = conditions.query_for(request)
    answer = digdig.query("127.0.0.1", bind.port, qname, rdatatype, 2.0)
    return conditions.evaluate(request, answer)


def record_request(zone, condition, rdatatype, rdata, name="www"):
    return make_request(zone, condition, record_name=f"{name}.{zone}",
                        rdatatype=rdatatype, rdata=rdata)


@pytest.mark.parametrize("served_serial, expected_serial, met", [
    (100, 100, True),
    (101, 100, True),
    (99, 100, False),
])
def test_serial_not_lower_on_bind(bind, unique_zone, served_serial, expected_serial, met):
    bind.add_zone(unique_zone, serial=served_serial)
    request = make_request(unique_zone, model.SERIAL_NOT_LOWER, expected_serial)

    verdict = conditions.evaluate(request, soa_answer(bind, unique_zone))

    assert verdict.met is met
    assert verdict.serial == served_serial


def test_zone_removed_on_bind(bind, unique_zone):
    bind.add_zone(unique_zone)
    request = make_request(unique_zone, model.ZONE_REMOVED)

    served = conditions.evaluate(request, soa_answer(bind, unique_zone))
    bind.delete_zone(unique_zone)
    removed = conditions.evaluate(request, soa_answer(bind, unique_zone))

    assert not served.met
    assert removed.met
    assert removed.serial is None


def test_failed_query_meets_nothing():
    answer = digdig.Answer(received_at=0, rtt_seconds=1, failure="timeout")

    for condition in model.CONDITIONS:
        verdict = conditions.evaluate(make_request("a.test.", condition, 1), answer)
        assert not verdict.met


@pytest.mark.parametrize("actual, expected, result", [
    (5, 4294967290, True),            # wrapped past 2**32 - 1
    (4294967290, 5, False),
    (9, 100, False),
    (100, 100, True),
    (2**31, 0, False),                # exactly 2**31 apart: undefined, not met
    (0, 2**31, False),
])
def test_serial_arithmetic(actual, expected, result):
    assert conditions.serial_not_lower(actual, expected) is result


def test_zone_exists_on_bind(bind, unique_zone):
    request = make_request(unique_zone, model.ZONE_EXISTS)

    before = evaluate_on_bind(bind, request)
    bind.add_zone(unique_zone, serial=3)
    after = evaluate_on_bind(bind, request)

    assert not before.met
    assert after.met
    assert after.serial == 3


# Each pair: what nsupdate writes into the zone, and a differently spelled
# but equal rdata that a harness may send.
CANONICAL_CASES = [
    ("A", "192.0.2.1", "192.0.2.1"),
    ("AAAA", "2001:db8::1", "2001:DB8:0:0:0:0:0:1"),
    ("CNAME", "target.example.net.", "TARGET.Example.NET"),
    ("MX", "10 mail.example.net.", "10 MAIL.example.net."),
    ("TXT", '"hello world"', '"hello world"'),
    ("TXT", "token", '"token"'),
    ("SRV", "0 5 5060 sip.example.net.", "0 5 5060 SIP.example.net"),
    ("CAA", '0 issue "ca.example.net"', '0 issue "ca.example.net"'),
]


@pytest.mark.parametrize("rdatatype, written, requested", CANONICAL_CASES)
def test_record_present_canonical_forms(bind, unique_zone, rdatatype, written, requested):
    bind.add_zone(unique_zone)
    request = record_request(unique_zone, model.RECORD_PRESENT, rdatatype, requested)

    before = evaluate_on_bind(bind, request)
    bind.add_record(unique_zone, "www", rdatatype, written)
    after = evaluate_on_bind(bind, request)

    assert not before.met
    assert after.met


@pytest.mark.parametrize("rdatatype, written, requested", [
    ("MX", "10 mail.example.net.", "20 mail.example.net."),
    ("TXT", '"hello world"', "hello world"),
    ("A", "192.0.2.1", "192.0.2.2"),
])
def test_record_present_other_rdata(bind, unique_zone, rdatatype, written, requested):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", rdatatype, written)
    request = record_request(unique_zone, model.RECORD_PRESENT, rdatatype, requested)

    assert not evaluate_on_bind(bind, request).met


def test_record_removed_one_rdata(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.1")
    bind.add_record(unique_zone, "www", "A", "192.0.2.2")
    request = record_request(unique_zone, model.RECORD_REMOVED, "A", "192.0.2.1")

    before = evaluate_on_bind(bind, request)
    bind.delete_record(unique_zone, "www", "A", "192.0.2.1")
    after = evaluate_on_bind(bind, request)

    assert not before.met
    assert after.met


def test_record_removed_whole_set(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.1")
    bind.add_record(unique_zone, "www", "A", "192.0.2.2")
    request = record_request(unique_zone, model.RECORD_REMOVED, "A", None)

    before = evaluate_on_bind(bind, request)
    bind.delete_record(unique_zone, "www", "A", "192.0.2.1")
    one_left = evaluate_on_bind(bind, request)
    bind.delete_record(unique_zone, "www", "A")
    after = evaluate_on_bind(bind, request)

    assert not before.met
    assert not one_left.met
    assert after.met


def test_record_removed_when_zone_gone(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.1")
    request = record_request(unique_zone, model.RECORD_REMOVED, "A", "192.0.2.1")

    bind.delete_zone(unique_zone)

    assert evaluate_on_bind(bind, request).met


@pytest.mark.parametrize("rdatatype, written, requested", [
    ("TXT", '"apex"', "apex"),
    # NS below the apex would be a delegation, answered without AA.
    ("NS", "ns2.example.net.", "NS2.example.net"),
])
def test_record_present_at_apex(bind, unique_zone, rdatatype, written, requested):
    bind.add_zone(unique_zone)
    request = make_request(unique_zone, model.RECORD_PRESENT, record_name=unique_zone,
                           rdatatype=rdatatype, rdata=requested)

    bind.add_record(unique_zone, "@", rdatatype, written)

    assert evaluate_on_bind(bind, request).met


def test_delegation_is_not_authoritative(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "child", "NS", "ns.example.net.")
    request = record_request(unique_zone, model.RECORD_PRESENT, "NS", "ns.example.net.",
                             name="child")

    verdict = evaluate_on_bind(bind, request)

    assert not verdict.met
    assert not verdict.authoritative


def test_large_txt_set_over_tcp(bind, unique_zone):
    bind.add_zone(unique_zone)
    texts = [f'"{index:03d}-' + "x" * 200 + '"' for index in range(30)]
    for text in texts:
        bind.add_record(unique_zone, "big", "TXT", text)
    request = record_request(unique_zone, model.RECORD_PRESENT, "TXT", texts[-1], name="big")

    qname, rdatatype = conditions.query_for(request)
    answer = digdig.query("127.0.0.1", bind.port, qname, rdatatype, 2.0)
    verdict = conditions.evaluate(request, answer)

    assert answer.protocol == "tcp"
    assert len(digdig.find_rrset(answer.response, qname, rdatatype)) == 30
    assert verdict.met
