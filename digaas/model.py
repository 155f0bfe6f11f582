"""The poll request: its fields, their validation and its lifecycle states."""

import dataclasses
import functools
import ipaddress
import json
import math
import operator
import uuid

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from digaas import digdig

ACCEPTED = "ACCEPTED"
COMPLETED = "COMPLETED"
ERROR = "ERROR"
STATUSES = (ACCEPTED, COMPLETED, ERROR)

SERIAL_NOT_LOWER = "serial_not_lower"
ZONE_EXISTS = "zone_exists"
ZONE_REMOVED = "zone_removed"
RECORD_PRESENT = "record_present"
RECORD_REMOVED = "record_removed"
ZONE_CONDITIONS = (SERIAL_NOT_LOWER, ZONE_EXISTS, ZONE_REMOVED)
RECORD_CONDITIONS = (RECORD_PRESENT, RECORD_REMOVED)
CONDITIONS = ZONE_CONDITIONS + RECORD_CONDITIONS

# The older spelling of record_present: "condition": "data=192.0.2.1".
LEGACY_DATA_PREFIX = "data="

DEFAULT_PORT = 53
MAX_SERIAL = 2**32 - 1

# Latest accepted start_time: the last second of the year 9999, far beyond any
# real test, but small enough to rule out typing errors such as milliseconds.
MAX_START_TIME = 253402300799


@dataclasses.dataclass(slots=True)
class PollRequest:
    """One request to poll a nameserver until a condition holds, and its result."""

    id: str
    nameserver: str
    zone_name: str
    start_time: float
    timeout: float
    frequency: float
    condition: str
    port: int = DEFAULT_PORT
    serial: int | None = None

    # The record set that record_present and record_removed read: its owner
    # name, its type, and the rdata to find in it (None: the whole set).
    record_name: str | None = None
    rdatatype: str | None = None
    rdata: str | None = None

    # "udp" (retried over TCP when truncated) or "tcp".
    protocol: str = digdig.UDP

    # Wall-clock time (unix seconds) when digaas accepted the request. Polling
    # stops at accepted_at + timeout.
    accepted_at: float | None = None

    # RESULT_FIELDS, the fields that change when a poll ends, come last and
    # in that order, from status on: see result_json().
    status: str = ACCEPTED

    # Seconds from start_time until the answer that showed the change arrived.
    duration: float | None = None

    # Wall-clock time of that answer.
    completed_at: float | None = None

    # Wall-clock time of the last answer that did not show the change yet.
    last_miss_at: float | None = None

    queries: int = 0
    last_rcode: str | None = None
    last_serial: int | None = None
    error: str | None = None

    # Seconds this request's queries waited for the per-nameserver query rate cap.
    rate_limit_delay_seconds: float = 0.0

    # The digaas worker that polls the request: host, listen address and
    # uwsgi worker id. A worker that starts resumes its own ACCEPTED requests.
    owner: str | None = None

    def to_dict(self):
        # Every field is a scalar, so the deep copy of dataclasses.asdict,
        # several times slower, is not needed.
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def to_json(self):
        """Return to_dict() as the JSON text, in bytes, that the API sends and the storages keep."""
        return json.dumps(self.to_dict()).encode()

    def result_json(self):
        """Return the end of to_json(), from RESULT_JSON_MARKER on.

        It contains RESULT_FIELDS. A storage that writes a result keeps the
        stored text before the marker, so the other fields stay as stored,
        and puts this text after it.
        """
        text = json.dumps({name: getattr(self, name) for name in RESULT_FIELDS})
        return b", " + text[1:].encode()

    @classmethod
    def from_dict(cls, values):
        return cls(**values)

    def copy(self):
        # dataclasses.replace() checks every field, and took about five times
        # as long as passing the values to __init__ in field order (timeit,
        # CPython 3.11). The poll engine copies each result it queues.
        return PollRequest(*_field_values(self))

    @property
    def deadline(self):
        """Wall-clock time (unix seconds) when polling gives up."""
        return self.accepted_at + self.timeout


FIELD_NAMES = tuple(field.name for field in dataclasses.fields(PollRequest))
_field_values = operator.attrgetter(*FIELD_NAMES)

# Fields that change when a poll ends; the storages write only these then.
RESULT_FIELDS = ("status", "duration", "completed_at", "last_miss_at", "queries",
                 "last_rcode", "last_serial", "error", "rate_limit_delay_seconds", "owner")

# The text in to_json() where RESULT_FIELDS start. A JSON string contains a
# double quote only after a backslash, so no value can contain this marker.
RESULT_JSON_MARKER = b', "status": '

# Fields a client may send; the others are set by digaas.
INPUT_FIELDS = ("nameserver", "port", "zone_name", "serial", "start_time",
                "timeout", "frequency", "condition", "record_name", "rdatatype",
                "rdata", "protocol")
RECORD_FIELDS = ("record_name", "rdatatype", "rdata")
REQUIRED_FIELDS = ("nameserver", "zone_name", "start_time", "timeout",
                   "frequency", "condition")
REQUIRED_FIELD_MEANINGS = {
    "nameserver": "give the IPv4 or IPv6 address of the nameserver to poll, such as 192.0.2.53",
    "zone_name": "give the zone to poll, such as example.com.",
    "start_time": "give the unix seconds when the change was made, such as 1421867419.5",
    "timeout": "give the seconds to poll before giving up, greater than 0",
    "frequency": "give the seconds between queries, such as 1",
    "condition": "give one of " + ", ".join(CONDITIONS),
}


class InvalidField(ValueError):
    """A field of a poll request is missing or has a value that is not allowed."""

    def __init__(self, field, value, allowed):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {_as_json(value)}: {allowed}")


# Longest spelling of a client's value quoted in an error message.
MAX_QUOTED_VALUE_CHARACTERS = 200


def _as_json(value):
    """Spell a client's value as JSON (true, null, "text"), as the client sent it, shortened."""
    try:
        text = json.dumps(value)
    except RecursionError:
        return "(a value nested too deeply to show)"
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_QUOTED_VALUE_CHARACTERS:
        text = text[:MAX_QUOTED_VALUE_CHARACTERS] + "..."
    return text


class MissingField(InvalidField):
    """A required field (or, with kind="query parameter", parameter) is missing."""

    def __init__(self, field, allowed, kind="field"):
        super().__init__(field, None, allowed)
        self.args = (f"missing required {kind} {field!r}: {allowed}",)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(body, field, minimum, maximum, *, exclusive_minimum=False, unit="seconds"):
    value = body[field]
    if not _is_number(value) or not math.isfinite(value):
        raise InvalidField(field, value, f"must be a finite JSON number of {unit}")

    too_low = value <= minimum if exclusive_minimum else value < minimum
    if too_low or value > maximum:
        low = "greater than" if exclusive_minimum else "at least"
        allowed = f"must be {low} {minimum} and at most {maximum} {unit}"
        if value > maximum and minimum < value / 1000 <= maximum:
            allowed += "; is it in milliseconds? Then divide it by 1000"
        raise InvalidField(field, value, allowed)

    return value


def _integer(body, field, minimum, maximum):
    value = body[field]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidField(
            field, value, f"must be a JSON integer from {minimum} to {maximum}")

    if not minimum <= value <= maximum:
        raise InvalidField(
            field, value, f"must be an integer from {minimum} to {maximum}")

    return value


def _nameserver(value):
    allowed = ("must be an IPv4 or IPv6 address such as 192.0.2.53 or 2001:db8::53,"
               " without brackets, port or zone index (use the port field)")
    if not isinstance(value, str):
        raise InvalidField("nameserver", value, allowed)

    # ipaddress accepts "fe80::1%eth0"; a scope only makes sense on the
    # client's host, so it is rejected rather than silently dropped.
    if "%" in value:
        raise InvalidField("nameserver", value, allowed)

    try:
        return _canonical_address(value)
    except ValueError:
        raise InvalidField("nameserver", value, allowed) from None


# A perf test posts the same few nameservers and each zone once per
# nameserver, so these caches spare most POSTs the parsing.
@functools.lru_cache(maxsize=1024)
def _canonical_address(text):
    return str(ipaddress.ip_address(text))


@functools.lru_cache(maxsize=8192)
def _canonical_name(text):
    return dns.name.from_text(text).to_text()


def _dns_name(field, value):
    allowed = "must be a DNS name such as example.com., labels of 1 to 63 characters between dots"
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidField(field, value, allowed)

    # Python counts every whitespace character but the ASCII space as not
    # printable, so this rejects all whitespace and control characters.
    if " " in value or not value.isprintable():
        raise InvalidField(field, value, allowed)

    try:
        return _canonical_name(value)
    except dns.exception.DNSException as error:
        # dnspython's messages start with a capital and end with a period.
        reason = str(error).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        raise InvalidField(field, value, f"{allowed} ({reason})") from None


def _record_name(value, zone_name):
    name_text = _dns_name("record_name", value)
    name = dns.name.from_text(name_text)
    if not name.is_subdomain(dns.name.from_text(zone_name)):
        raise InvalidField("record_name", value, f"must be {zone_name} or a name under it")
    return name_text


def _rdatatype(value):
    allowed = "must be a record type such as A, AAAA, CNAME, MX, TXT, NS, SRV or TYPE65534"
    if not isinstance(value, str):
        raise InvalidField("rdatatype", value, allowed)

    try:
        rdatatype = dns.rdatatype.from_text(value)
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise InvalidField("rdatatype", value, allowed) from None

    if dns.rdatatype.is_metatype(rdatatype) or rdatatype == dns.rdatatype.OPT:
        raise InvalidField("rdatatype", value, allowed + ", not a query-only type")

    return dns.rdatatype.to_text(rdatatype)


def parse_rdata(rdatatype, text):
    """Parse rdata as dnspython reads zone-file text, names taken as absolute."""
    return dns.rdata.from_text(dns.rdataclass.IN, rdatatype, text,
                               origin=dns.name.root, relativize=False)


def _rdata(value, rdatatype):
    if not isinstance(value, str) or not value.strip():
        raise InvalidField("rdata", value, f"must be {rdatatype} record data as in a zone file")

    try:
        parse_rdata(rdatatype, value)
    except Exception as error:
        # dnspython raises SyntaxError, ValueError, DNSException and others
        # depending on the type; each means the text is not valid rdata.
        raise InvalidField(
            "rdata", value,
            f"must be {rdatatype} record data as in a zone file ({error})") from None

    return value


def _split_legacy_condition(body):
    """Turn "condition": "data=<rdata>" into record_present with that rdata."""
    condition = body["condition"]
    if not isinstance(condition, str) or not condition.startswith(LEGACY_DATA_PREFIX):
        return condition, body.get("rdata")

    if body.get("rdata") is not None:
        raise InvalidField("rdata", body["rdata"],
                           f"must be omitted when condition is {condition!r}, which"
                           " already gives the rdata")
    return RECORD_PRESENT, condition[len(LEGACY_DATA_PREFIX):]


def parse_poll_request(body, *, max_timeout_seconds, min_frequency_seconds,
                       now, request_id=None):
    """Validate a client's JSON body and return a new ACCEPTED PollRequest.

    Raises InvalidField (or MissingField) for the first field that is not
    allowed, with the field, the value and what is allowed.
    """
    if not isinstance(body, dict):
        raise InvalidField("body", body, "must be a JSON object")

    for field in body:
        if field not in INPUT_FIELDS:
            allowed = "accepted fields are " + ", ".join(INPUT_FIELDS)
            if field in FIELD_NAMES:
                allowed = f"{field} is set by digaas, not by the client"
            raise InvalidField("field", field, allowed)

    for field in REQUIRED_FIELDS:
        if field not in body:
            raise MissingField(field, REQUIRED_FIELD_MEANINGS[field])

    condition, rdata = _split_legacy_condition(body)
    if condition not in CONDITIONS:
        raise InvalidField("condition", condition,
                           "must be one of " + ", ".join(CONDITIONS)
                           + f", or {LEGACY_DATA_PREFIX}<rdata>")

    nameserver = _nameserver(body["nameserver"])
    zone_name = _dns_name("zone_name", body["zone_name"])
    start_time = _number(body, "start_time", 0, MAX_START_TIME, unit="unix seconds")
    timeout = _number(body, "timeout", 0, max_timeout_seconds, exclusive_minimum=True)
    frequency = _number(body, "frequency", min_frequency_seconds, max_timeout_seconds)

    port = DEFAULT_PORT
    if body.get("port") is not None:
        port = _integer(body, "port", 1, 65535)

    protocol = body.get("protocol")
    if protocol is None:
        protocol = digdig.UDP
    elif protocol not in digdig.PROTOCOLS:
        raise InvalidField("protocol", protocol, "must be udp or tcp")

    serial = None
    if body.get("serial") is not None:
        serial = _integer(body, "serial", 0, MAX_SERIAL)
    elif condition == SERIAL_NOT_LOWER:
        raise MissingField("serial", f"required when condition is {SERIAL_NOT_LOWER}")

    record_name = rdatatype = None
    if condition in ZONE_CONDITIONS:
        values = {"record_name": body.get("record_name"),
                  "rdatatype": body.get("rdatatype"), "rdata": rdata}
        for field, value in values.items():
            if value is not None:
                raise InvalidField(field, value, "is only allowed when condition is "
                                   + " or ".join(RECORD_CONDITIONS))
    else:
        record_name = zone_name
        if body.get("record_name") is not None:
            record_name = _record_name(body["record_name"], zone_name)

        if body.get("rdatatype") is None:
            raise MissingField("rdatatype", f"required when condition is {condition}")
        rdatatype = _rdatatype(body["rdatatype"])

        if rdata is not None:
            rdata = _rdata(rdata, rdatatype)
        elif condition == RECORD_PRESENT:
            raise MissingField("rdata", f"required when condition is {RECORD_PRESENT}")

    return PollRequest(
        id=request_id or str(uuid.uuid4()),
        nameserver=nameserver,
        port=port,
        zone_name=zone_name,
        serial=serial,
        start_time=start_time,
        timeout=timeout,
        frequency=frequency,
        condition=condition,
        record_name=record_name,
        rdatatype=rdatatype,
        rdata=rdata,
        protocol=protocol,
        accepted_at=now,
    )
