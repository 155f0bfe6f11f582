"""Property tests of POST /requests: any body gets a 2xx or a JSON 4xx, never a 5xx.

Hypothesis posts arbitrary JSON values, objects made of the real field
names with plausible or arbitrary values, and arbitrary bytes, through
falcon's TestClient over a real sqlite file. Afterwards the storage must
hold exactly the requests that got a 202.

Every body that digaas could accept is kept to nameserver 127.0.0.1 or ::1
and port 9, where nothing listens, so no poll started here can send a query
off the machine.
"""

import ipaddress
import json
import sys
import types

import falcon.testing
import hypothesis
import pytest
from hypothesis import strategies as st

import digaas_config
from digaas import app
from digaas import model
from digaas import poll
from digaas import storage_sqlite

CLOSED_PORT = 9
LOOPBACK_NAMESERVERS = ("127.0.0.1", "::1")

# No deadline, because a sqlite commit on a slow disk can take longer than
# hypothesis' default of 200 ms, and a bounded number of examples, so this
# file runs in seconds.
PROPERTY_SETTINGS = hypothesis.settings(max_examples=300, deadline=None)

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text())
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20)

# Values near what a harness sends, including the edge of each range.
PLAUSIBLE_VALUES = {
    "nameserver": st.sampled_from(LOOPBACK_NAMESERVERS + ("localhost", "127.0.0.1:53", "")),
    "port": st.sampled_from([CLOSED_PORT, 0, 65536, -1, "9", 9.0, True]),
    "zone_name": st.sampled_from(["hello.com.", "hello.com", "xn--bcher-kva.example.", ".",
                                  "a..b.", " hello.com.", "hello.com.\n", "a" * 64 + "."]),
    "condition": st.sampled_from(list(model.CONDITIONS) + [
        "data=127.0.0.2", "data=", "data=not an address", "SERIAL_NOT_LOWER", ""]),
    "serial": st.integers(min_value=-1, max_value=model.MAX_SERIAL + 1),
    "start_time": st.floats(min_value=-1, max_value=model.MAX_START_TIME + 1)
    | st.integers(min_value=-1, max_value=model.MAX_START_TIME + 1),
    "timeout": st.floats(min_value=-1, max_value=4000),
    "frequency": st.floats(min_value=0, max_value=4000),
    "record_name": st.sampled_from(["hello.com.", "www.hello.com.", "www", "other.org.", ""]),
    "rdatatype": st.sampled_from(["A", "AAAA", "MX", "TXT", "txt", "TYPE65280", "ANY",
                                  "OPT", "NOPE", ""]),
    "rdata": st.sampled_from(["127.0.0.2", "::2", "10 mail.hello.com.", '"v=spf1 -all"',
                              "\\# 2 abcd", "not rdata", ""]),
    "protocol": st.sampled_from(["udp", "tcp", "UDP", "quic"]),
}

# Objects made of the real field names with plausible or arbitrary values.
# The first kind has every required field, so that validation goes past its
# first check. The second has any of the fields, and the third adds a field
# that digaas sets itself or does not know.
field_values = {field: PLAUSIBLE_VALUES[field] | json_values for field in model.INPUT_FIELDS}
optional_fields = [field for field in model.INPUT_FIELDS if field not in model.REQUIRED_FIELDS]
field_biased_objects = st.one_of(
    st.fixed_dictionaries(
        {field: field_values[field] for field in model.REQUIRED_FIELDS},
        optional={field: field_values[field] for field in optional_fields}),
    st.fixed_dictionaries({}, optional=field_values),
    st.builds(
        lambda body, extra, value: {**body, extra: value},
        st.fixed_dictionaries({field: PLAUSIBLE_VALUES[field]
                               for field in model.REQUIRED_FIELDS}),
        st.sampled_from(["id", "status", "duration", "owner", "rate_limit_delay_seconds", "x"]),
        json_values),
)

# Bodies that pass validation for each condition, for the property to see 202s too.
valid_objects = st.fixed_dictionaries({
    "nameserver": st.sampled_from(LOOPBACK_NAMESERVERS),
    "port": st.just(CLOSED_PORT),
    "zone_name": st.just("hello.com."),
    "start_time": st.floats(min_value=0, max_value=model.MAX_START_TIME),
    "timeout": st.floats(min_value=0.001, max_value=60),
    "frequency": st.floats(min_value=0.1, max_value=60),
    "protocol": st.sampled_from(["udp", "tcp"]),
}).flatmap(lambda body: st.sampled_from([
    {**body, "condition": "serial_not_lower", "serial": 1},
    {**body, "condition": "zone_exists"},
    {**body, "condition": "zone_removed"},
    {**body, "condition": "record_present", "rdatatype": "A", "rdata": "127.0.0.2"},
    {**body, "condition": "record_removed", "record_name": "www.hello.com.", "rdatatype": "MX"},
    {**body, "condition": "data=127.0.0.2", "rdatatype": "A"},
]))

request_bodies = json_values | field_biased_objects | valid_objects


def keep_queries_on_loopback(body):
    """Point the nameserver and port of a body at loopback port 9 where digaas would query.

    A nameserver that parses as an address off loopback becomes 127.0.0.1,
    and a port that digaas accepts, or null or missing (the default, 53),
    becomes 9. Values that digaas rejects stay, to test the rejection, and
    so does a body without a nameserver, which digaas rejects.
    """
    if not isinstance(body, dict) or "nameserver" not in body:
        return body

    nameserver = body.get("nameserver")
    if isinstance(nameserver, str) and is_off_loopback(nameserver):
        body = {**body, "nameserver": LOOPBACK_NAMESERVERS[0]}

    port = body.get("port")
    if port is None or is_accepted_port(port):
        body = {**body, "port": CLOSED_PORT}
    return body


def is_off_loopback(text):
    try:
        return not ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def is_accepted_port(value):
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def stays_on_loopback(data):
    """Return whether bytes that digaas might accept would only make it query loopback port 9.

    Python's json module accepts everything digaas' stricter parser accepts,
    so a body it cannot read as an object is rejected by digaas too.
    """
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return True
    if not isinstance(body, dict) or "nameserver" not in body:
        return True

    nameserver = body.get("nameserver")
    if isinstance(nameserver, str) and is_off_loopback(nameserver):
        return False

    port = body.get("port")
    if port is None or is_accepted_port(port):
        return port == CLOSED_PORT
    return True


def mutate(data, position, replacement):
    """Replace the byte of data at position (modulo its length) with replacement."""
    if not data:
        return replacement
    position %= len(data)
    return data[:position] + replacement + data[position + 1:]


def encode(body, encoding):
    return json.dumps(keep_queries_on_loopback(body)).encode(encoding)


# JSON accepts UTF-8, UTF-16 and UTF-32, and json.loads also reads a UTF-8 BOM.
encoded_objects = st.builds(encode, field_biased_objects | valid_objects,
                            st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))

# Shapes that a generator of small values does not reach: deep nesting,
# integers with thousands of digits, and bodies around MAX_BODY_BYTES.
hostile_bytes = st.one_of(
    st.integers(min_value=1, max_value=30000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=1, max_value=20000).map(lambda depth: b'{"a":' * depth + b"1"
                                                  + b"}" * depth),
    st.integers(min_value=1, max_value=6000).map(lambda digits: b'{"port": ' + b"9" * digits
                                                 + b"}"),
    st.integers(min_value=-2, max_value=2).map(
        lambda delta: b" " * (digaas_config.MAX_BODY_BYTES + delta - 2) + b"{}"),
)

# Arbitrary bytes, encoded objects, encoded objects with one byte replaced,
# deleted or followed by another, and hostile shapes.
request_bytes = st.one_of(
    st.binary(max_size=300),
    encoded_objects,
    st.builds(mutate, encoded_objects, st.integers(min_value=0), st.binary(max_size=2)),
    hostile_bytes,
)


@pytest.fixture
def backend(tmp_path):
    opened = storage_sqlite.SqliteStorage(str(tmp_path / "property.sqlite3"),
                                          busy_timeout_seconds=5)
    yield opened
    opened.close()


@pytest.fixture
def client(backend):
    settings = digaas_config.defaults()
    settings["NAMESERVER_ALLOW"] = "127.0.0.0/8,::1/128"
    poller = poll.Poller(backend, dns_query_timeout_seconds=0.1)
    yield falcon.testing.TestClient(
        app.create_app(backend, types.SimpleNamespace(**settings), poller))
    poller.kill(timeout_seconds=5)


def stored_ids(backend):
    return {row[0] for row in backend._connection.execute("SELECT id FROM requests")}


def check_response(result, accepted_ids):
    """Assert that a response is a 202 with a record or a 4xx with a JSON error."""
    assert 200 <= result.status_code < 500, (result.status_code, result.text)
    assert result.headers["Content-Type"].startswith("application/json"), result.headers

    if result.status_code == 202:
        assert set(result.json) == set(model.FIELD_NAMES)
        assert result.headers["Location"] == f"/requests/{result.json['id']}"
        assert ipaddress.ip_address(result.json["nameserver"]).is_loopback
        assert result.json["port"] == CLOSED_PORT
        accepted_ids.append(result.json["id"])
    else:
        assert 400 <= result.status_code < 500, (result.status_code, result.text)
        assert isinstance(result.json["title"], str), result.text
        assert isinstance(result.json["description"], str), result.text


def test_any_json_body_is_202_or_4xx(client, backend):
    accepted_ids = []

    @PROPERTY_SETTINGS
    @hypothesis.given(body=request_bodies)
    def post_json(body):
        # json.dumps writes NaN and Infinity, which digaas must reject.
        data = json.dumps(keep_queries_on_loopback(body))

        result = client.simulate_post("/requests", body=data)

        check_response(result, accepted_ids)
        assert len(stored_ids(backend)) == len(accepted_ids)

    post_json()

    assert accepted_ids, "no generated body was accepted"
    assert stored_ids(backend) == set(accepted_ids)


def test_any_bytes_body_is_202_or_4xx(client, backend):
    accepted_ids = []

    @PROPERTY_SETTINGS
    @hypothesis.given(data=request_bytes.filter(stays_on_loopback))
    def post_bytes(data):
        result = client.simulate_post("/requests", body=data)

        check_response(result, accepted_ids)
        assert len(stored_ids(backend)) == len(accepted_ids)

    post_bytes()

    assert stored_ids(backend) == set(accepted_ids)


NESTED_FIELD_BASE = {
    "nameserver": LOOPBACK_NAMESERVERS[0],
    "port": CLOSED_PORT,
    "zone_name": "hello.com.",
    "start_time": 1421867419,
    "timeout": 1,
    "frequency": 1,
    "condition": "zone_exists",
}


def test_nesting_near_recursion_limit_is_400(client, backend):
    # Python's json module parses and writes nested arrays through recursion,
    # so the depths just below the recursion limit are where a body parses but
    # cannot be written back into an error message. Random depths rarely land
    # there, so every depth around the limit is posted.
    limit = sys.getrecursionlimit()
    server_errors = []

    for depth in range(limit - 150, limit + 10):
        nested = "[" * depth + "]" * depth
        bodies = {"array": nested}
        for field in ("nameserver", "zone_name", "condition", "rdata"):
            body = json.dumps({**NESTED_FIELD_BASE, field: None})
            bodies[field] = body.replace(f'"{field}": null', f'"{field}": {nested}')

        for shape, body in bodies.items():
            result = client.simulate_post("/requests", body=body)
            if result.status_code >= 500:
                server_errors.append((shape, depth, result.status_code))

    assert not server_errors, f"5xx responses as (shape, depth, status): {server_errors}"
    assert stored_ids(backend) == set()
