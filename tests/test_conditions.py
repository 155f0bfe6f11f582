"""conditions.evaluate on answers from a real BIND9, and serial arithmetic."""

import dns.rdatatype
import pytest

from digaas import conditions
from digaas import digdig
from digaas import model


def make_request(zone, condition, serial=None):
    return model.PollRequest(id="r", nameserver="127.0.0.1", zone_name=zone,
                             start_time=0, timeout=5, frequency=1,
                             condition=condition, serial=serial, accepted_at=0)


def soa_answer(bind, zone):
    return digdig.query("127.0.0.1", bind.port, zone, dns.rdatatype.SOA, 2.0)


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
