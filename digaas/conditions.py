"""Decide from one DNS answer whether a poll request's condition holds."""

import dataclasses

import dns.rcode
import dns.rdatatype
import dns.serial

from digaas import digdig
from digaas import model

# Response codes with which an authoritative server says it does not serve
# the zone (any more).
REMOVED_RCODES = frozenset((dns.rcode.NXDOMAIN, dns.rcode.REFUSED, dns.rcode.NOTAUTH))


@dataclasses.dataclass
class Verdict:
    """Whether the condition held, and the zone serial the answer showed."""

    met: bool
    serial: int | None = None


def query_for(request):
    """Return the (qname, rdatatype) that a request's condition is read from."""
    return request.zone_name, dns.rdatatype.SOA


def evaluate(request, answer):
    """Return the Verdict of one digdig.Answer for the request's condition.

    A failed query (timeout, network error, garbage) never meets a condition,
    and neither does SERVFAIL or any other server-side failure.
    """
    response = answer.response
    if response is None:
        return Verdict(met=False)

    rcode = response.rcode()
    serial = None
    if rcode == dns.rcode.NOERROR:
        serial = digdig.find_soa_serial(response, request.zone_name)

    if request.condition == model.SERIAL_NOT_LOWER:
        met = serial is not None and serial_not_lower(serial, request.serial)
        return Verdict(met=met, serial=serial)

    if request.condition == model.ZONE_REMOVED:
        met = rcode in REMOVED_RCODES or (rcode == dns.rcode.NOERROR and serial is None)
        return Verdict(met=met, serial=serial)

    raise ValueError(f"unknown condition {request.condition!r}")


def serial_not_lower(actual, expected):
    """Compare zone serials with RFC 1982 arithmetic: actual >= expected.

    When the two are exactly 2**31 apart the comparison is undefined in RFC
    1982, and this returns False, so the poll goes on.
    """
    return dns.serial.Serial(actual) >= dns.serial.Serial(expected)
