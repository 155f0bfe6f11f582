"""Decide from one DNS answer whether a poll request's condition holds.

The rules, for every condition:

- A failed query (timeout, network error, garbage) never meets a condition.
- REFUSED and NOTAUTH mean the nameserver does not serve the zone. They meet
  zone_removed and record_removed and nothing else. Servers send them
  without the AA flag, so the flag is not required.
- NOERROR and NXDOMAIN count only with the AA flag. Without it the answer
  is "not yet" and is counted as not authoritative.
- Any other rcode (SERVFAIL, FORMERR, NOTIMP, ...) meets nothing.
"""

import dataclasses
import functools

import dns.rcode
import dns.rdatatype
import dns.serial

from digaas import digdig
from digaas import model

NOT_SERVED_RCODES = frozenset((dns.rcode.REFUSED, dns.rcode.NOTAUTH))
REMOVAL_CONDITIONS = frozenset((model.ZONE_REMOVED, model.RECORD_REMOVED))


@dataclasses.dataclass
class Verdict:
    """Whether the condition held, and what the answer showed on the way."""

    met: bool

    # The zone's SOA serial in the answer, for the zone conditions.
    serial: int | None = None

    # False when a NOERROR or NXDOMAIN response came without the AA flag.
    authoritative: bool = True

    # True when the response's header was valid but its records did not parse.
    malformed: bool = False


def query_for(request):
    """Return the (qname, rdatatype) that a request's condition is read from."""
    if request.condition in model.RECORD_CONDITIONS:
        return request.record_name, dns.rdatatype.from_text(request.rdatatype)
    return request.zone_name, dns.rdatatype.SOA


def evaluate(request, answer):
    """Return the Verdict of one digdig.Answer for the request's condition."""
    wire = answer.wire
    if wire is None:
        return Verdict(met=False)

    rcode = wire[3] & 0x0F
    if rcode in NOT_SERVED_RCODES:
        return Verdict(met=request.condition in REMOVAL_CONDITIONS)

    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Verdict(met=False)

    if not answer.authoritative:
        return Verdict(met=False, authoritative=False)

    if rcode == dns.rcode.NXDOMAIN:
        return Verdict(met=request.condition in REMOVAL_CONDITIONS)

    if request.condition in model.ZONE_CONDITIONS:
        try:
            serial = digdig.soa_serial_from_wire(wire, request.zone_name)
        except digdig.MalformedResponse:
            return Verdict(met=False, malformed=True)
        return Verdict(met=_zone_condition_met(request, serial), serial=serial)

    response = answer.response
    if response is None:
        return Verdict(met=False, malformed=True)
    rrset = digdig.find_rrset(response, request.record_name,
                              dns.rdatatype.from_text(request.rdatatype))
    return Verdict(met=_record_condition_met(request, rrset))


def _zone_condition_met(request, serial):
    if request.condition == model.SERIAL_NOT_LOWER:
        return serial is not None and serial_not_lower(serial, request.serial)
    if request.condition == model.ZONE_EXISTS:
        return serial is not None
    if request.condition == model.ZONE_REMOVED:
        return serial is None
    raise ValueError(f"unknown zone condition {request.condition!r}")


def _record_condition_met(request, rrset):
    if request.rdata is None:
        present = bool(rrset)
    else:
        present = rrset is not None and _parsed_rdata(request.rdatatype, request.rdata) in rrset

    if request.condition == model.RECORD_PRESENT:
        return present
    if request.condition == model.RECORD_REMOVED:
        return not present
    raise ValueError(f"unknown record condition {request.condition!r}")


@functools.lru_cache(maxsize=4096)
def _parsed_rdata(rdatatype, text):
    # Rdata compares in canonical wire form, so the case of names, IPv6
    # spelling, TXT quoting and the like do not matter.
    return model.parse_rdata(dns.rdatatype.from_text(rdatatype), text)


def serial_not_lower(actual, expected):
    """Compare zone serials with RFC 1982 arithmetic: actual >= expected.

    When the two are exactly 2**31 apart the comparison is undefined in RFC
    1982, and this returns False, so the poll goes on.
    """
    return dns.serial.Serial(actual) >= dns.serial.Serial(expected)
