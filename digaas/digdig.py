"""Send one DNS query to one nameserver and report what came back.

This module decides nothing about poll conditions: it returns an Answer that
says when the response arrived and what it contained, or why none did.
"""

import dataclasses
import socket
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype


@dataclasses.dataclass
class Answer:
    """The outcome of one query: a response, or the failure that replaced it."""

    # Wall-clock time (unix seconds) when the response arrived or the query failed.
    received_at: float

    # Round-trip time of the query in seconds.
    rtt_seconds: float

    # The parsed response, or None when the query failed.
    response: dns.message.Message | None = None

    # "timeout", "network error: ..." or "bad response: ..." when response is None.
    failure: str | None = None

    @property
    def rcode(self):
        """Text of the response's rcode (NOERROR, NXDOMAIN, ...), or None."""
        if self.response is None:
            return None
        return dns.rcode.to_text(self.response.rcode())

    @property
    def authoritative(self):
        return self.response is not None and bool(self.response.flags & dns.flags.AA)


def make_query(qname, rdatatype):
    """Build a query for an authoritative server: recursion desired is cleared."""
    query = dns.message.make_query(qname, rdatatype)
    query.flags &= ~dns.flags.RD
    return query


def query(nameserver, port, qname, rdatatype, timeout_seconds):
    """Send one query over UDP, retrying over TCP when the response is truncated.

    Responses that do not match the query (other source, other id or
    question) are ignored while the timeout lasts, as a resolver does.
    Never raises for DNS or network failures: they are returned in
    Answer.failure.
    """
    message = make_query(qname, rdatatype)
    sent_at = time.monotonic()

    try:
        response, _ = dns.query.udp_with_fallback(
            message, nameserver, timeout=timeout_seconds, port=port,
            ignore_unexpected=True, ignore_errors=True)
        failure = None
    except dns.exception.Timeout:
        response, failure = None, "timeout"
    except (OSError, socket.error) as error:
        response, failure = None, f"network error: {error}"
    except dns.exception.DNSException as error:
        response, failure = None, f"bad response: {error}"

    rtt_seconds = time.monotonic() - sent_at
    return Answer(received_at=time.time(), rtt_seconds=rtt_seconds,
                  response=response, failure=failure)


def find_soa_serial(response, zone_name):
    """Return the serial of the zone's SOA in the answer section, or None."""
    name = dns.name.from_text(zone_name)
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == dns.rdatatype.SOA and rrset:
            return rrset[0].serial
    return None
