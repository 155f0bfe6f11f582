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

UDP = "udp"
TCP = "tcp"
PROTOCOLS = (UDP, TCP)

# EDNS UDP payload size offered to the nameserver: the size recommended by
# DNS Flag Day 2020 to avoid IP fragmentation. Larger answers come with TC=1
# and are fetched again over TCP.
EDNS_PAYLOAD_BYTES = 1232

MAX_UDP_MESSAGE_BYTES = 65535

# Receive buffer asked for each UDP query socket. The kernel allocates it only
# as datagrams arrive.
UDP_RECEIVE_BUFFER_BYTES = 1 << 20


@dataclasses.dataclass
class Answer:
    """The outcome of one query: a response, or the failure that replaced it."""

    # Wall-clock time (unix seconds) when the response arrived or the query failed.
    received_at: float

    # Round-trip time of the query in seconds, TCP retry included.
    rtt_seconds: float

    # The parsed response, or None when the query failed.
    response: dns.message.Message | None = None

    # "timeout", "network error: ..." or "bad response: ..." when response is None.
    failure: str | None = None

    # The transport of the response: "udp", or "tcp" when forced or after TC=1.
    protocol: str = UDP

    # Replies to the UDP query that were dropped while waiting for the real
    # response: unparsable data, or another id or question.
    ignored_replies: int = 0

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
    """Build a query for an authoritative server: RD cleared, EDNS0 on."""
    query = dns.message.make_query(qname, rdatatype, use_edns=0, payload=EDNS_PAYLOAD_BYTES)
    query.flags &= ~dns.flags.RD
    return query


def query(nameserver, port, qname, rdatatype, timeout_seconds, protocol=UDP):
    """Send one query and wait at most timeout_seconds for its response.

    Over UDP, the socket is connected to the nameserver, so the kernel drops
    datagrams from any other source and reports ICMP errors. Replies with
    another id or question, and data that does not parse, are counted in
    Answer.ignored_replies while the wait goes on. A truncated (TC=1)
    response is fetched again over TCP within the same timeout. DNS and
    network failures are returned in Answer.failure, never raised.
    """
    message = make_query(qname, rdatatype)
    started = time.monotonic()
    deadline = started + timeout_seconds
    answer = Answer(received_at=0.0, rtt_seconds=0.0, protocol=protocol)

    try:
        if protocol == UDP:
            response = _query_udp(message, nameserver, port, deadline, answer)
            if response.flags & dns.flags.TC:
                answer.protocol = TCP
                response = _query_tcp(message, nameserver, port, deadline)
        else:
            response = _query_tcp(message, nameserver, port, deadline)
        answer.response = response
    except dns.exception.Timeout:
        answer.failure = "timeout"
    except EOFError:
        # dns.query.tcp raises EOFError when the server closes the
        # connection before the whole response arrived.
        answer.failure = "network error: connection closed before the whole response arrived"
    except OSError as error:
        answer.failure = f"network error: {error.strerror or error}"
    except dns.exception.DNSException as error:
        answer.failure = f"bad response: {error}"

    answer.received_at = time.time()
    answer.rtt_seconds = time.monotonic() - started
    return answer


def _query_udp(message, nameserver, port, deadline, answer):
    family = socket.AF_INET6 if ":" in nameserver else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # Room for a flood of stray replies that arrives before the real one.
        # Linux caps this at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
        sock.connect((nameserver, port))
        sock.send(message.to_wire())

        while True:
            remaining_seconds = deadline - time.monotonic()
            if remaining_seconds <= 0:
                raise dns.exception.Timeout(timeout=0)
            sock.settimeout(remaining_seconds)
            try:
                wire = sock.recv(MAX_UDP_MESSAGE_BYTES)
            except TimeoutError:
                raise dns.exception.Timeout(timeout=remaining_seconds) from None

            response = _parse_reply(wire)
            if response is not None and message.is_response(response):
                return response
            answer.ignored_replies += 1


def _parse_reply(wire):
    try:
        return dns.message.from_wire(wire)
    except Exception:
        # Whatever dnspython raises on it (FormError, ShortHeader, a
        # UnicodeError in a name...), data that does not parse is garbage to
        # be ignored like a stray datagram.
        return None


def _query_tcp(message, nameserver, port, deadline):
    remaining_seconds = deadline - time.monotonic()
    if remaining_seconds <= 0:
        raise dns.exception.Timeout(timeout=0)
    return dns.query.tcp(message, nameserver, timeout=remaining_seconds, port=port)


def find_rrset(response, name, rdatatype):
    """Return the answer-section RRset of that name and type, or None."""
    name = dns.name.from_text(name) if isinstance(name, str) else name
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdatatype:
            return rrset
    return None


def find_soa_serial(response, zone_name):
    """Return the serial of the zone's SOA in the answer section, or None."""
    rrset = find_rrset(response, zone_name, dns.rdatatype.SOA)
    if not rrset:
        return None
    return rrset[0].serial
