"""The HTTP layer through falcon's TestClient, over a real sqlite file."""

import json
import types

import falcon.testing
import pytest

import digaas
import digaas_config
from digaas import app
from digaas import model
from digaas import poll
from digaas import storage_sqlite

VALID = {
    "nameserver": "127.0.0.1",
    "zone_name": "hello.com.",
    "serial": 1418336470,
    "start_time": 1421867419,
    "timeout": 7.3,
    "frequency": 1.2,
    "condition": "serial_not_lower",
    # Nothing listens on port 9 of loopback, so the polls started by these
    # tests only ever time out.
    "port": 9,
}


@pytest.fixture
def backend(tmp_path):
    opened = storage_sqlite.SqliteStorage(str(tmp_path / "app.sqlite3"), busy_timeout_seconds=5)
    yield opened
    opened.close()


@pytest.fixture
def client(backend):
    config = types.SimpleNamespace(**digaas_config.defaults())
    poller = poll.Poller(backend, dns_query_timeout_seconds=0.1)
    yield falcon.testing.TestClient(app.create_app(backend, config, poller))
    poller.kill(timeout_seconds=5)


def count_rows(backend):
    return backend._connection.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


def test_root_names_service(client):
    result = client.simulate_get("/")

    assert result.status_code == 200
    assert result.json == {"service": "digaas", "version": digaas.__version__}


def test_post_accepts_and_echoes(client, backend):
    result = client.simulate_post("/requests", json=VALID)

    assert result.status_code == 202
    for field, value in VALID.items():
        assert result.json[field] == value
    assert result.json["status"] == "ACCEPTED"
    assert result.json["duration"] is None
    assert result.headers["Location"] == f"/requests/{result.json['id']}"
    assert backend.get(result.json["id"]).zone_name == "hello.com."


@pytest.mark.parametrize("headers", [
    {},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "text/plain"},
])
def test_post_without_json_content_type(client, headers):
    result = client.simulate_post("/requests", body=json.dumps(VALID), headers=headers)

    assert result.status_code == 202
    assert result.json["zone_name"] == "hello.com."


def test_get_returns_stored_record(client):
    created = client.simulate_post("/requests", json=VALID).json

    result = client.simulate_get(f"/requests/{created['id']}")

    assert result.status_code == 200
    assert result.json["id"] == created["id"]
    assert result.json["status"] in ("ACCEPTED", "ERROR")


def test_get_unknown_id_is_json_404(client):
    result = client.simulate_get("/requests/0a6d1e33-1b52-4c5b-8d8e-8a0b5ef0c111")

    assert result.status_code == 404
    assert "0a6d1e33-1b52-4c5b-8d8e-8a0b5ef0c111" in result.json["description"]


@pytest.mark.parametrize("body, fragments", [
    (json.dumps({**VALID, "timeout": -1}), ["timeout", "-1", "greater than 0"]),
    (json.dumps({**VALID, "nameserver": "ns1.example.com"}), ["nameserver", "ns1.example.com"]),
    (json.dumps({**VALID, "port": 70000}), ["port", "70000", "65535"]),
    (json.dumps({**VALID, "extra": 1}), ["extra", "accepted fields"]),
    (json.dumps({**VALID, "serial": True}), ["serial", "true", "integer"]),
    ('{"timeout": NaN}', ["NaN", "finite number"]),
    ('{"timeout": Infinity}', ["Infinity"]),
    ('{"a": 1, "a": 2}', ["'a'", "more than once"]),
    ("{not json", ["not valid JSON"]),
    ("nameserver=127.0.0.1&zone_name=hello.com.", ["looks form-encoded", "one JSON object", "json="]),
    ("hello", ["not valid JSON", "one JSON object"]),
    ("", ["empty"]),
    ("[1, 2]", ["body", "JSON object"]),
    (b"\xff\xfe\x00garbage", ["not valid JSON"]),
])
def test_bad_input_is_400_and_stores_nothing(client, backend, body, fragments):
    result = client.simulate_post("/requests", body=body)

    assert result.status_code == 400
    assert result.json["title"] == "Invalid poll request"
    for fragment in fragments:
        assert fragment in result.json["description"]
    assert count_rows(backend) == 0


def test_body_over_limit_is_413(client, backend):
    body = json.dumps({**VALID, "zone_name": "a" * 70000})

    result = client.simulate_post("/requests", body=body)

    assert result.status_code == 413
    assert "65536" in result.json["description"]
    assert count_rows(backend) == 0


def test_storage_failure_is_503(client, backend):
    backend._connection.execute("DROP TABLE requests")

    result = client.simulate_post("/requests", json=VALID)

    assert result.status_code == 503
    assert "nothing was stored" in result.json["description"]
    assert "Traceback" not in result.text


def test_unknown_route_is_json_404(client):
    result = client.simulate_get("/nothing-here")

    assert result.status_code == 404
    assert result.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path, query, fragments", [
    ("/requests", "start=abc", ["start", "abc", "unix seconds"]),
    ("/requests", "start=10&end=5", ["end", "5", "before start"]),
    ("/requests", "end=inf", ["end", "finite"]),
    ("/requests", "status=DONE", ["status", "DONE", "ACCEPTED"]),
    ("/requests", "nameserver=ns1.example.com", ["nameserver", "ns1.example.com"]),
    ("/requests", "condition=zone_gone", ["condition", "zone_gone"]),
    ("/requests", "format=xml", ["format", "xml", "json, csv"]),
    ("/requests", "limit=0", ["limit", "0", "from 1 to 100000"]),
    ("/requests", "limit=100001", ["limit", "100001"]),
    ("/requests", "offset=-1", ["offset", "-1"]),
    ("/stats", "", ["start", "missing"]),
    ("/stats", "start=1", ["end", "missing"]),
    ("/stats", "start=20&end=10", ["end", "before start"]),
    ("/plots/latency.png", "start=x&end=10", ["start", '"x"']),
])
def test_bad_query_is_400(client, path, query, fragments):
    result = client.simulate_get(path, query_string=query)

    assert result.status_code == 400
    for fragment in fragments:
        assert fragment in result.json["description"]


def test_unknown_plot_kind_is_404(client):
    result = client.simulate_get("/plots/pie.png", query_string="start=0&end=10")

    assert result.status_code == 404
    assert "propagation_cdf" in result.json["description"]


def test_listing_pages_with_link(client):
    created = [client.simulate_post("/requests", json={**VALID, "start_time": 100 + index}).json
               for index in range(5)]

    first = client.simulate_get("/requests", query_string="limit=2")
    last = client.simulate_get("/requests", query_string="limit=2&offset=4")

    assert [row["id"] for row in first.json] == [row["id"] for row in created[:2]]
    assert "rel=next" in first.headers["Link"]
    assert "offset=2" in first.headers["Link"]
    assert [row["id"] for row in last.json] == [created[4]["id"]]
    assert "Link" not in last.headers


@pytest.mark.parametrize("body, fragment", [
    ('{"nameserver": ' + "[" * 20000 + "]" * 20000 + "}", "nested too deeply"),
    ('{"serial": ' + "9" * 5000 + "}", "5000 digits is too long"),
])
def test_hostile_json_is_400(client, backend, body, fragment):
    result = client.simulate_post("/requests", body=body)

    assert result.status_code == 400
    assert fragment in result.json["description"]
    assert count_rows(backend) == 0


def test_chunked_body_is_411(client, backend):
    result = client.simulate_post("/requests", body=json.dumps(VALID),
                                  headers={"Transfer-Encoding": "chunked",
                                           "Content-Length": None})

    assert result.status_code == 411
    assert "Content-Length" in result.json["description"]
    assert count_rows(backend) == 0


def test_root_is_503_without_storage(client, backend):
    backend._connection.execute("DROP TABLE requests")

    result = client.simulate_get("/")

    assert result.status_code == 503
    assert "retry later" in result.json["description"]


def test_wrong_method_is_described(client):
    result = client.simulate_delete("/requests")

    assert result.status_code == 405
    assert "DELETE is not allowed on /requests" in result.json["description"]
    assert "GET" in result.json["description"]


def make_client(backend, **settings):
    config = types.SimpleNamespace(**{**digaas_config.defaults(), **settings})
    poller = poll.Poller(backend, dns_query_timeout_seconds=0.1)
    return falcon.testing.TestClient(app.create_app(backend, config, poller)), poller


@pytest.mark.parametrize("nameserver, allowed", [
    ("127.0.0.1", True),
    ("::1", True),
    ("127.9.9.9", True),
    ("192.0.2.1", False),
    ("2001:db8::1", False),
])
def test_nameserver_allow_list(backend, nameserver, allowed):
    client, poller = make_client(backend, NAMESERVER_ALLOW="127.0.0.0/8, ::1/128")

    result = client.simulate_post("/requests", json={**VALID, "nameserver": nameserver})
    poller.kill(timeout_seconds=5)

    if allowed:
        assert result.status_code == 202
    else:
        assert result.status_code == 403
        assert nameserver in result.json["description"]
        assert "NAMESERVER_ALLOW" in result.json["description"]
        assert count_rows(backend) == 0


def test_bad_allow_list_names_entry(backend):
    with pytest.raises(ValueError) as raised:
        make_client(backend, NAMESERVER_ALLOW="127.0.0.0/8, localhost")

    assert "'localhost'" in str(raised.value)


@pytest.mark.parametrize("header, status, problem", [
    (None, 401, "no bearer token was sent"),
    ("Bearer wrong-token", 401, "is not this digaas's API token"),
    ("Basic c2VjcmV0", 401, "does not start with 'Bearer '"),
    ("s3cret-token", 401, "does not start with 'Bearer '"),
    ("Bearer s3cret-token", 202, None),
    ("bearer s3cret-token", 202, None),
])
def test_api_token_on_post(backend, header, status, problem):
    client, poller = make_client(backend, API_TOKEN="s3cret-token")
    headers = {} if header is None else {"Authorization": header}

    result = client.simulate_post("/requests", json=VALID, headers=headers)
    poller.kill(timeout_seconds=5)

    assert result.status_code == status
    if status == 401:
        assert result.headers["WWW-Authenticate"] == "Bearer"
        assert "Authorization: Bearer" in result.json["description"]
        assert problem in result.json["description"]
        assert "s3cret" not in result.text


def test_api_token_spares_root_only(backend):
    client, poller = make_client(backend, API_TOKEN="s3cret-token")

    root = client.simulate_get("/")
    listing = client.simulate_get("/requests")
    stats = client.simulate_get("/stats", query_string="start=0&end=1")

    assert root.status_code == 200
    assert listing.status_code == 401
    assert stats.status_code == 401


@pytest.mark.parametrize("path, query", [
    ("/requests", "stauts=ERROR"),
    ("/stats", "start=0&end=1&format=csv"),
    ("/plots/latency.png", "start=0&end=1&limit=3"),
])
def test_unknown_query_parameter_is_400(client, path, query):
    result = client.simulate_get(path, query_string=query)

    assert result.status_code == 400
    assert result.json["title"] == "Invalid query parameter"
    assert "accepted query parameters are" in result.json["description"]


def test_window_in_milliseconds_is_400(client):
    result = client.simulate_get("/stats", params={"start": "1796427800000",
                                                   "end": "1796427900000"})

    assert result.status_code == 400
    assert "1796427800000" in result.json["description"]
    assert "milliseconds" in result.json["description"]


@pytest.mark.parametrize("field", model.REQUIRED_FIELDS)
def test_missing_field_says_what_to_give(client, field):
    body = {"nameserver": "127.0.0.1", "zone_name": "m.test.", "start_time": 1, "timeout": 1,
            "frequency": 1, "condition": "zone_exists"}
    del body[field]

    result = client.simulate_post("/requests", json=body)

    assert result.status_code == 400
    assert result.json["description"].startswith(f"missing required field '{field}': give ")


def test_repeated_key_is_rejected(client):
    result = client.simulate_post("/requests", body='{"timeout": 30, "timeout": 31}')

    assert result.status_code == 400
    assert result.json["description"] == ("the body is rejected: key 'timeout' appears more"
                                          " than once; send each key once")


def test_not_found_lists_every_endpoint(client):
    result = client.simulate_get("/nothing")

    for endpoint in ("/requests/{id}", "/stats", "/plots/{kind}.png", "/metrics",
                     "/openapi.json"):
        assert endpoint in result.json["description"]
