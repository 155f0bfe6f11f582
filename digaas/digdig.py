"""Send one DNS query to one nameserver and report what came back.

This module decides nothing about poll conditions: it returns an Answer that
says when the response arrived and what it contained, or why none did.
Queries over UDP share one socket per nameserver (see transport.py); a
Query builds its wire form once, so that polling the same question again
only changes the id.
"""

import functools
import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from digaas import transport

UDP = "udp"
TCP = "tcp"
PROTOCOLS = (UDP, TCP)

# EDNS UDP payload size offered to the nameserver: the size recommended by
# DNS Flag Day 2020 to avoid IP fragmentation. Larger responses come with
# TC=1 and are fetched again over TCP.
EDNS_PAYLOAD_BYTES = 1232

# Receive buffer asked for each UDP socket, from transport.py.
UDP_RECEIVE_BUFFER_BYTES = transport.RECEIVE_BUFFER_BYTES

_SOA = dns.rdatatype.SOA

# Text of each 4-bit header rcode, looked up once instead of per answer.
_RCODE_TEXT = tuple(dns.rcode.to_text(value) for value in range(16))
_FLAG_AA = 0x04
_FLAG_TC = 0x02

_udp_transport = None


def udp_transport():
    """Return this process's shared UDP transport, made on first use."""
    global _udp_transport
    if _udp_transport is None:
        _udp_transport = transport.UdpTransport()
    return _udp_transport


class Answer:
    """The outcome of one query: a response, or the failure that replaced it."""

    def __init__(self, received_at, rtt_seconds, wire=None, failure=None, protocol=UDP,
                 ignored_replies=0):
        # Wall-clock time (unix seconds) when the response arrived or the query failed.
        self.received_at = received_at
        # Round-trip time of the query in seconds, TCP retry included.
        self.rtt_seconds = rtt_seconds
        # The response as sent by the nameserver, or None when the query failed.
        self.wire = wire
        # "timeout", "network error: ..." or "bad response: ..." when wire is None.
        self.failure = failure
        # The transport of the response: "udp", or "tcp" when forced or after TC=1.
        self.protocol = protocol
        # Replies dropped while the query waited: unparsable data, or another
        # id or question.
        self.ignored_replies = ignored_replies

    @functools.cached_property
    def response(self):
        """The response parsed by dnspython, or None when there is none or it does not parse."""
        if self.wire is None:
            return None
        try:
            return dns.message.from_wire(self.wire)
        except Exception:
            # Whatever dnspython raises on it, the data is not a DNS message.
            return None

    @property
    def rcode(self):
        """Text of the response's rcode (NOERROR, NXDOMAIN, ...), or None."""
        if self.wire is None:
            return None
        return _RCODE_TEXT[self.wire[3] & 0x0F]

    @property
    def authoritative(self):
        return self.wire is not None and bool(self.wire[2] & _FLAG_AA)

    @property
    def truncated(self):
        return self.wire is not None and bool(self.wire[2] & _FLAG_TC)


class Query:
    """One question, ready to send many times: RD cleared, EDNS0 on."""

    def __init__(self, qname, rdatatype):
        self.message = make_query(qname, rdatatype)
        self.wire = self.message.to_wire()
        # The question section as sent (the query has no name compression),
        # lower-cased to compare with the echo in replies.
        self.question = self.wire[12:_skip_name(self.wire, 12) + 4].lower()


@functools.lru_cache(maxsize=65536)
def prepare(qname, rdatatype):
    """Return the Query of a question, shared by every poll that asks it."""
    return Query(qname, rdatatype)


def make_query(qname, rdatatype):
    """Build a query for an authoritative server: RD cleared, EDNS0 on."""
    query = dns.message.make_query(qname, rdatatype, use_edns=0, payload=EDNS_PAYLOAD_BYTES)
    query.flags &= ~dns.flags.RD
    return query


def query(nameserver, port, qname, rdatatype, timeout_seconds, protocol=UDP):
    """Send one query and wait at most timeout_seconds for its response."""
    return send(Query(qname, rdatatype), nameserver, port, timeout_seconds, protocol)


def send(prepared, nameserver, port, timeout_seconds, protocol=UDP):
    """Send a Query and wait at most timeout_seconds for its response.

    Over UDP, replies with another id or question and data that does not
    parse are counted in Answer.ignored_replies while the wait goes on, and
    a truncated (TC=1) response is fetched again over TCP within the same
    timeout. DNS and network failures are returned in Answer.failure, never
    raised.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    answer = Answer(received_at=0.0, rtt_seconds=0.0, protocol=protocol)

    if protocol == UDP:
        reply = udp_transport().query(prepared.wire, prepared.question, nameserver, port,
                                      timeout_seconds)
        answer.ignored_replies = reply.ignored_replies
        answer.wire = reply.wire
        answer.failure = reply.failure
        answer.received_at = reply.received_at
        if answer.wire is not None and answer.wire[2] & _FLAG_TC:
            answer.protocol = TCP
            answer.wire = None
            _send_tcp(prepared, nameserver, port, deadline, answer)
    else:
        _send_tcp(prepared, nameserver, port, deadline, answer)

    if answer.wire is None:
        answer.received_at = time.time()
    answer.rtt_seconds = time.monotonic() - started
    return answer


def start_udp(prepared, nameserver, port, timeout_seconds, callback):
    """Send a Query over UDP without blocking; call callback(answer) from the gevent loop.

    The answer may be truncated (Answer.truncated): fetching it again over
    TCP, which blocks, is the caller's to do in a greenlet.
    """
    started = time.monotonic()

    def on_reply(reply):
        callback(Answer(received_at=reply.received_at or time.time(),
                        rtt_seconds=time.monotonic() - started, wire=reply.wire,
                        failure=reply.failure, ignored_replies=reply.ignored_replies))

    udp_transport().send(prepared.wire, prepared.question, nameserver, port, timeout_seconds,
                         on_reply)


def _send_tcp(prepared, nameserver, port, deadline, answer):
    remaining_seconds = deadline - time.monotonic()
    try:
        if remaining_seconds <= 0:
            raise dns.exception.Timeout(timeout=0)
        response = dns.query.tcp(prepared.message, nameserver, timeout=remaining_seconds,
                                 port=port)
        answer.wire = response.to_wire()
        answer.received_at = time.time()
        answer.__dict__["response"] = response
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


def find_rrset(response, name, rdatatype):
    """Return the answer-section RRset of that name and type, or None."""
    name = dns.name.from_text(name) if isinstance(name, str) else name
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdatatype:
            return rrset
    return None


def find_soa_serial(response, zone_name):
    """Return the serial of the zone's SOA in the answer section, or None."""
    rrset = find_rrset(response, zone_name, _SOA)
    if not rrset:
        return None
    return rrset[0].serial


class MalformedResponse(ValueError):
    """The wire form ends early or has a name that runs past it."""


def soa_serial_from_wire(wire, zone_name):
    """Return the serial of the zone's SOA in the answer section of wire, or None.

    Reads only the header, the question and the answer records, which is
    several times faster than a full parse. The zone must be the question
    name. Raises MalformedResponse when the message does not hold together.
    """
    try:
        question_count, answer_count = struct.unpack_from("!HH", wire, 4)
        offset = 12
        for _ in range(question_count):
            offset = _skip_name(wire, offset) + 4

        for _ in range(answer_count):
            owner = offset
            offset = _skip_name(wire, offset)
            rdatatype, rdataclass, _, length = struct.unpack_from("!HHIH", wire, offset)
            offset += 10
            if rdatatype == _SOA and rdataclass == 1 and _owner_is(wire, owner, zone_name):
                serial_offset = _skip_name(wire, _skip_name(wire, offset))
                return struct.unpack_from("!I", wire, serial_offset)[0]
            offset += length
    except (IndexError, struct.error):
        raise MalformedResponse("response ends before its records do") from None
    return None


def _skip_name(wire, offset):
    """Return the offset just past the (possibly compressed) name at offset."""
    while True:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length & 0xC0:
            raise MalformedResponse(f"invalid label type at offset {offset}")
        offset += length + 1


def _owner_is(wire, offset, zone_name):
    # Servers point the owner at the question name (offset 12), which is
    # the zone for the zone conditions; anything else is read in full.
    if wire[offset] == 0xC0 and wire[offset + 1] == 12:
        return True
    try:
        name, _ = dns.name.from_wire(wire, offset)
    except dns.exception.DNSException:
        raise MalformedResponse(f"invalid owner name at offset {offset}") from None
    return name == dns.name.from_text(zone_name)
