import math

import pytest

from digaas import model

VALID = {
    "nameserver": "127.0.0.1",
    "zone_name": "hello.com.",
    "serial": 1418336470,
    "start_time": 1421867419,
    "timeout": 7.3,
    "frequency": 1.2,
    "condition": "serial_not_lower",
}


def parse(body):
    return model.parse_poll_request(
        body, max_timeout_seconds=3600, min_frequency_seconds=0.1, now=1000.0)


def with_fields(**changes):
    body = dict(VALID)
    for field, value in changes.items():
        if value is REMOVE:
            del body[field]
        else:
            body[field] = value
    return body


REMOVE = object()


def test_valid_request_keeps_inputs():
    request = parse(VALID)

    for field, value in VALID.items():
        assert getattr(request, field) == value
    assert request.port == 53
    assert request.status == model.ACCEPTED
    assert request.duration is None
    assert request.accepted_at == 1000.0
    assert request.deadline == 1007.3


def test_result_json_ends_to_json():
    request = parse(VALID)
    request.status = model.ERROR
    request.duration = 0.1 + 0.2
    # The marker's own text inside a value is escaped, so it is not found there.
    request.error = 'nameserver said: {"a": 1, "status": 2} \\'

    text = request.to_json()
    marker_at = text.index(model.RESULT_JSON_MARKER)

    assert model.FIELD_NAMES[-len(model.RESULT_FIELDS):] == model.RESULT_FIELDS
    assert text[marker_at:] == request.result_json()
    assert text.count(model.RESULT_JSON_MARKER) == 1


def test_copy_is_equal_and_separate():
    request = parse(VALID)
    request.owner = "host:127.0.0.1:9090:1"

    copied = request.copy()
    copied.status = model.COMPLETED

    assert copied.to_dict() == dict(request.to_dict(), status=model.COMPLETED)
    assert request.status == model.ACCEPTED


def test_id_is_uuid4():
    import uuid

    first = parse(VALID).id
    second = parse(VALID).id

    assert uuid.UUID(first).version == 4
    assert first != second


@pytest.mark.parametrize("changes, expected", [
    ({"zone_name": "hello.com"}, {"zone_name": "hello.com."}),
    ({"zone_name": "HeLLo.com."}, {"zone_name": "HeLLo.com."}),
    ({"nameserver": "::1"}, {"nameserver": "::1"}),
    ({"nameserver": "0:0:0:0:0:0:0:1"}, {"nameserver": "::1"}),
    ({"port": 5353}, {"port": 5353}),
    ({"port": None}, {"port": 53}),
    ({"start_time": 1421867419.123456}, {"start_time": 1421867419.123456}),
    ({"serial": 0}, {"serial": 0}),
    ({"serial": 2**32 - 1}, {"serial": 2**32 - 1}),
    ({"timeout": 3600}, {"timeout": 3600}),
    ({"frequency": 0.1}, {"frequency": 0.1}),
    ({"condition": "zone_removed", "serial": REMOVE}, {"serial": None}),
    ({"condition": "zone_removed"}, {"serial": 1418336470}),
])
def test_valid_variants(changes, expected):
    request = parse(with_fields(**changes))

    for field, value in expected.items():
        assert getattr(request, field) == value


@pytest.mark.parametrize("changes, field, fragment", [
    # Required fields.
    ({"nameserver": REMOVE}, "nameserver", "missing"),
    ({"zone_name": REMOVE}, "zone_name", "missing"),
    ({"start_time": REMOVE}, "start_time", "missing"),
    ({"timeout": REMOVE}, "timeout", "missing"),
    ({"frequency": REMOVE}, "frequency", "missing"),
    ({"condition": REMOVE}, "condition", "missing"),
    ({"serial": REMOVE}, "serial", "required when condition is serial_not_lower"),
    # Unknown and server-owned fields.
    ({"colour": "red"}, "field", "accepted fields are"),
    ({"status": "COMPLETED"}, "field", "set by digaas"),
    ({"id": "x"}, "field", "set by digaas"),
    # nameserver.
    ({"nameserver": "ns1.example.com"}, "nameserver", "IPv4 or IPv6 address"),
    ({"nameserver": "[::1]:53"}, "nameserver", "without brackets"),
    ({"nameserver": "127.0.0.1:53"}, "nameserver", "IPv4 or IPv6"),
    ({"nameserver": "fe80::1%eth0"}, "nameserver", "zone index"),
    ({"nameserver": "256.1.1.1"}, "nameserver", "IPv4 or IPv6"),
    ({"nameserver": ""}, "nameserver", "IPv4 or IPv6"),
    ({"nameserver": 2130706433}, "nameserver", "IPv4 or IPv6"),
    ({"nameserver": None}, "nameserver", "IPv4 or IPv6"),
    # zone_name.
    ({"zone_name": ""}, "zone_name", "DNS name"),
    ({"zone_name": "a..b."}, "zone_name", "DNS name"),
    ({"zone_name": "hello world.com."}, "zone_name", "DNS name"),
    ({"zone_name": " hello.com."}, "zone_name", "DNS name"),
    ({"zone_name": "a" * 64 + ".com."}, "zone_name", "DNS name"),
    ({"zone_name": ("a" * 60 + ".") * 5}, "zone_name", "DNS name"),
    ({"zone_name": 42}, "zone_name", "DNS name"),
    ({"zone_name": "tab\t.com."}, "zone_name", "DNS name"),
    # serial.
    ({"serial": -1}, "serial", "from 0 to 4294967295"),
    ({"serial": 2**32}, "serial", "from 0 to 4294967295"),
    ({"serial": 1.5}, "serial", "integer"),
    ({"serial": "1418336470"}, "serial", "integer"),
    ({"serial": True}, "serial", "integer"),
    # start_time.
    ({"start_time": -1}, "start_time", "at least 0"),
    ({"start_time": 1421867419000}, "start_time", "at most"),
    ({"start_time": 1421867419000}, "start_time", "in milliseconds? Then divide it by 1000"),
    ({"start_time": 1421867419000}, "start_time", "253402300799 unix seconds"),
    ({"start_time": "1421867419"}, "start_time", "finite JSON number"),
    ({"start_time": True}, "start_time", "finite JSON number"),
    ({"start_time": math.nan}, "start_time", "finite JSON number"),
    ({"start_time": math.inf}, "start_time", "finite JSON number"),
    # timeout.
    ({"timeout": 0}, "timeout", "greater than 0"),
    ({"timeout": 30000}, "timeout", "at most 3600 seconds; is it in milliseconds?"),
    ({"timeout": -3}, "timeout", "greater than 0"),
    ({"timeout": 3600.5}, "timeout", "at most 3600"),
    ({"timeout": False}, "timeout", "finite JSON number"),
    ({"timeout": None}, "timeout", "finite JSON number"),
    ({"timeout": [7]}, "timeout", "finite JSON number"),
    # frequency.
    ({"frequency": 0}, "frequency", "at least 0.1"),
    ({"frequency": 0.05}, "frequency", "at least 0.1"),
    ({"frequency": -1}, "frequency", "at least 0.1"),
    ({"frequency": "1"}, "frequency", "finite JSON number"),
    ({"frequency": math.inf}, "frequency", "finite JSON number"),
    # port.
    ({"port": 0}, "port", "from 1 to 65535"),
    ({"port": 65536}, "port", "from 1 to 65535"),
    ({"port": 53.0}, "port", "integer"),
    ({"port": "53"}, "port", "integer"),
    ({"port": True}, "port", "integer"),
    # condition.
    ({"condition": "serial_greater"}, "condition", "must be one of"),
    ({"condition": None}, "condition", "must be one of"),
])
def test_invalid_field(changes, field, fragment):
    with pytest.raises(model.InvalidField) as raised:
        parse(with_fields(**changes))

    assert raised.value.field == field
    assert field in str(raised.value)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("body", [[], "text", 42, None, [VALID]])
def test_body_not_object(body):
    with pytest.raises(model.InvalidField) as raised:
        parse(body)

    assert raised.value.field == "body"
    assert "JSON object" in str(raised.value)


def test_invalid_value_in_message():
    with pytest.raises(model.InvalidField) as raised:
        parse(with_fields(timeout=-3))

    assert "-3" in str(raised.value)


def test_round_trip_through_dict():
    request = parse(VALID)

    assert model.PollRequest.from_dict(request.to_dict()) == request


RECORD = {**VALID, "condition": "record_present", "record_name": "www.hello.com.",
          "rdatatype": "A", "rdata": "192.0.2.1"}
del RECORD["serial"]


def with_record_fields(**changes):
    body = dict(RECORD)
    for field, value in changes.items():
        if value is REMOVE:
            del body[field]
        else:
            body[field] = value
    return body


@pytest.mark.parametrize("changes, expected", [
    ({}, {"condition": "record_present", "record_name": "www.hello.com.",
          "rdatatype": "A", "rdata": "192.0.2.1", "protocol": "udp"}),
    ({"record_name": REMOVE}, {"record_name": "hello.com."}),
    ({"record_name": "www.hello.com"}, {"record_name": "www.hello.com."}),
    ({"rdatatype": "aaaa", "rdata": "2001:DB8::1"}, {"rdatatype": "AAAA"}),
    ({"rdatatype": "TYPE65280", "rdata": r"\# 2 abcd"}, {"rdatatype": "TYPE65280"}),
    ({"rdatatype": "MX", "rdata": "10 mail.hello.com."}, {"rdata": "10 mail.hello.com."}),
    ({"rdatatype": "TXT", "rdata": '"v=spf1 -all"'}, {"rdata": '"v=spf1 -all"'}),
    ({"condition": "record_removed", "rdata": REMOVE}, {"rdata": None}),
    ({"condition": "record_removed"}, {"rdata": "192.0.2.1"}),
    ({"condition": "data=192.0.2.7", "rdata": REMOVE},
     {"condition": "record_present", "rdata": "192.0.2.7"}),
    ({"protocol": "tcp"}, {"protocol": "tcp"}),
])
def test_valid_record_variants(changes, expected):
    request = parse(with_record_fields(**changes))

    for field, value in expected.items():
        assert getattr(request, field) == value


@pytest.mark.parametrize("condition", ["zone_exists", "zone_removed"])
def test_zone_condition_without_serial(condition):
    body = with_fields(condition=condition, serial=REMOVE)

    request = parse(body)

    assert request.condition == condition
    assert request.record_name is None
    assert request.rdatatype is None


@pytest.mark.parametrize("changes, field, fragment", [
    ({"rdatatype": REMOVE}, "rdatatype", "required when condition is record_present"),
    ({"rdata": REMOVE}, "rdata", "required when condition is record_present"),
    ({"rdatatype": "BOGUS"}, "rdatatype", "record type"),
    ({"rdatatype": "ANY"}, "rdatatype", "query-only"),
    ({"rdatatype": "AXFR"}, "rdatatype", "query-only"),
    ({"rdatatype": "OPT"}, "rdatatype", "query-only"),
    ({"rdatatype": 1}, "rdatatype", "record type"),
    ({"rdata": "not-an-address"}, "rdata", "A record data"),
    ({"rdatatype": "AAAA"}, "rdata", "AAAA record data"),
    ({"rdatatype": "MX", "rdata": "mail.hello.com."}, "rdata", "MX record data"),
    ({"rdata": ""}, "rdata", "A record data"),
    ({"rdata": 3221225985}, "rdata", "A record data"),
    ({"record_name": "www.other.com."}, "record_name", "under it"),
    ({"record_name": "bad name."}, "record_name", "DNS name"),
    ({"condition": "data=192.0.2.7"}, "rdata", "must be omitted"),
    ({"condition": "data=192.0.2.777", "rdata": REMOVE}, "rdata", "192.0.2.777"),
    ({"protocol": "quic"}, "protocol", "udp or tcp"),
    ({"protocol": "UDP"}, "protocol", "udp or tcp"),
])
def test_invalid_record_field(changes, field, fragment):
    with pytest.raises(model.InvalidField) as raised:
        parse(with_record_fields(**changes))

    assert raised.value.field == field
    assert fragment in str(raised.value)


@pytest.mark.parametrize("field, value", [
    ("rdata", "192.0.2.1"),
    ("rdatatype", "A"),
    ("record_name", "www.hello.com."),
])
@pytest.mark.parametrize("condition", ["serial_not_lower", "zone_exists", "zone_removed"])
def test_record_field_with_zone_condition(condition, field, value):
    with pytest.raises(model.InvalidField) as raised:
        parse(with_fields(condition=condition, **{field: value}))

    assert raised.value.field == field
    assert "only allowed when condition is record_present or record_removed" in str(raised.value)
