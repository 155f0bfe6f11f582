"""The poll request: its fields, their validation and its lifecycle states."""

import dataclasses
import ipaddress
import math
import uuid

import dns.exception
import dns.name

ACCEPTED = "ACCEPTED"
COMPLETED = "COMPLETED"
ERROR = "ERROR"
STATUSES = (ACCEPTED, COMPLETED, ERROR)

SERIAL_NOT_LOWER = "serial_not_lower"
ZONE_REMOVED = "zone_removed"
CONDITIONS = (SERIAL_NOT_LOWER, ZONE_REMOVED)

DEFAULT_PORT = 53
MAX_SERIAL = 2**32 - 1

# Latest accepted start_time: the last second of the year 9999, far beyond any
# real test, but small enough to rule out typing errors such as milliseconds.
MAX_START_TIME = 253402300799


@dataclasses.dataclass
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
    status: str = ACCEPTED

    # Wall-clock time (unix seconds) when digaas accepted the request. Polling
    # stops at accepted_at + timeout.
    accepted_at: float | None = None

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

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)

    @property
    def deadline(self):
        """Wall-clock time (unix seconds) when polling gives up."""
        return self.accepted_at + self.timeout


FIELD_NAMES = tuple(field.name for field in dataclasses.fields(PollRequest))

# Fields that change when a poll ends; the storages write only these then.
RESULT_FIELDS = ("status", "duration", "completed_at", "last_miss_at", "queries",
                 "last_rcode", "last_serial", "error")

# Fields a client may send; the others are set by digaas.
INPUT_FIELDS = ("nameserver", "port", "zone_name", "serial", "start_time",
                "timeout", "frequency", "condition")
REQUIRED_FIELDS = ("nameserver", "zone_name", "start_time", "timeout",
                   "frequency", "condition")


class InvalidField(ValueError):
    """A field of a poll request is missing or has a value that is not allowed."""

    def __init__(self, field, value, allowed):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {value!r}: {allowed}")


class MissingField(InvalidField):
    def __init__(self, field, allowed):
        super().__init__(field, None, allowed)
        self.args = (f"missing required field {field!r}: {allowed}",)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(body, field, minimum, maximum, *, exclusive_minimum=False):
    value = body[field]
    if not _is_number(value) or not math.isfinite(value):
        raise InvalidField(field, value, "must be a finite JSON number")

    too_low = value <= minimum if exclusive_minimum else value < minimum
    if too_low or value > maximum:
        low = "greater than" if exclusive_minimum else "at least"
        raise InvalidField(
            field, value, f"must be {low} {minimum} and at most {maximum}")

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
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidField("nameserver", value, allowed) from None

    return str(address)


def _zone_name(value):
    allowed = "must be a DNS name such as example.com. (letters, digits, hyphens, dots)"
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidField("zone_name", value, allowed)

    if any(char.isspace() or not char.isprintable() for char in value):
        raise InvalidField("zone_name", value, allowed)

    try:
        name = dns.name.from_text(value)
    except dns.exception.DNSException as error:
        raise InvalidField("zone_name", value, f"{allowed}; {error}") from None

    return name.to_text()


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
            raise MissingField(field, "see the accepted fields in the README")

    condition = body["condition"]
    if condition not in CONDITIONS:
        raise InvalidField("condition", condition, "must be one of " + ", ".join(CONDITIONS))

    nameserver = _nameserver(body["nameserver"])
    zone_name = _zone_name(body["zone_name"])
    start_time = _number(body, "start_time", 0, MAX_START_TIME)
    timeout = _number(body, "timeout", 0, max_timeout_seconds, exclusive_minimum=True)
    frequency = _number(body, "frequency", min_frequency_seconds, max_timeout_seconds)

    port = DEFAULT_PORT
    if body.get("port") is not None:
        port = _integer(body, "port", 1, 65535)

    serial = None
    if body.get("serial") is not None:
        serial = _integer(body, "serial", 0, MAX_SERIAL)
    elif condition == SERIAL_NOT_LOWER:
        raise MissingField("serial", f"required when condition is {SERIAL_NOT_LOWER}")

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
        accepted_at=now,
    )
