"""The OpenAPI document: valid, complete, and obeyed by the real uwsgi service.

schemathesis sends generated requests to a live digaas. Every generated body
goes through keep_queries_on_loopback before it is sent, so each poll it
starts queries 127.0.0.1 or ::1 on port 9, where nothing listens, and the
service rejects any other nameserver too (NAMESERVER_ALLOW). The polls of the
hand-written requests query fake nameservers on loopback.
"""

import ipaddress
import time
import types

import falcon
import falcon.testing
import hypothesis
import openapi_spec_validator
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

import digaas
import digaas_config
from digaas import app
from digaas import model
from digaas import openapi
from digaas import poll
from digaas import selection
from digaas import stats
from digaas import storage_sqlite
from digaas.localservice import LocalService
from fakens import FakeNameserver
from test_property import CLOSED_PORT, keep_queries_on_loopback

API_TOKEN = "openapi-test-token"
AUTHORIZATION = {"Authorization": f"Bearer {API_TOKEN}"}

# Small limits, so that a generated poll ends within seconds and the service
# has few polls running when it stops.
LIMITS = {"max_timeout_seconds": 3.0, "min_frequency_seconds": 0.5, "max_body_bytes": 4096}

SERVICE_SETTINGS = {
    "MAX_TIMEOUT_SECONDS": LIMITS["max_timeout_seconds"],
    "MIN_FREQUENCY_SECONDS": LIMITS["min_frequency_seconds"],
    "MAX_BODY_BYTES": LIMITS["max_body_bytes"],
    "DNS_QUERY_TIMEOUT_SECONDS": 0.2,
    "LATENCY_FLUSH_SECONDS": 0.2,
    "NAMESERVER_ALLOW": "127.0.0.0/8,::1/128",
    "API_TOKEN": API_TOKEN,
}

LOOPBACK_NAMESERVER = "127.0.0.1"

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]

# The plots and the summary run in a child process that imports numpy and
# matplotlib, about a second each, so those operations get fewer examples.
EXAMPLES_PER_OPERATION = 30
EXAMPLES_PER_ANALYSIS_OPERATION = 10
ANALYSIS_PATHS = "^/(stats|plots/)"

SCHEMA = schemathesis.openapi.from_dict(openapi.document(digaas.__version__, **LIMITS))


def build_document():
    return openapi.document(digaas.__version__, **LIMITS)


def app_routes(falcon_app):
    """Return {uri_template: set of methods} for the resources routed in a falcon app."""
    routes = {}
    nodes = list(falcon_app._router._roots)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children or ())
        if node.resource is None:
            continue
        methods = {method for method in falcon.constants.COMBINED_METHODS
                   if hasattr(node.resource, f"on_{method.lower()}")}
        routes[node.uri_template] = methods
    return routes


@pytest.fixture
def backend(tmp_path):
    opened = storage_sqlite.SqliteStorage(str(tmp_path / "openapi.sqlite3"),
                                          busy_timeout_seconds=5)
    yield opened
    opened.close()


def make_config(**overrides):
    settings = digaas_config.defaults()
    settings.update(MAX_TIMEOUT_SECONDS=LIMITS["max_timeout_seconds"],
                    MIN_FREQUENCY_SECONDS=LIMITS["min_frequency_seconds"],
                    MAX_BODY_BYTES=LIMITS["max_body_bytes"])
    settings.update(overrides)
    return types.SimpleNamespace(**settings)


@pytest.fixture
def client(backend):
    poller = poll.Poller(backend, dns_query_timeout_seconds=0.1)
    yield falcon.testing.TestClient(app.create_app(backend, make_config(), poller))
    poller.kill(timeout_seconds=5)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = LocalService(tmp_path_factory.mktemp("openapi-service"), settings=SERVICE_SETTINGS)
    server.start()
    yield server
    server.stop()


def test_document_is_valid_openapi():
    openapi_spec_validator.validate(build_document())


def test_document_matches_app_routes(client):
    documented = {path: set(operations) for path, operations in build_document()["paths"].items()}
    documented = {path: {method.upper() for method in methods}
                  for path, methods in documented.items()}

    assert app_routes(client.app) == documented


def test_record_schema_lists_model_fields():
    schemas = build_document()["components"]["schemas"]

    assert list(schemas["PollRequestRecord"]["properties"]) == list(model.FIELD_NAMES)
    assert schemas["PollRequestRecord"]["required"] == list(model.FIELD_NAMES)
    assert set(schemas["PollRequestInput"]["properties"]) == set(model.INPUT_FIELDS)
    assert schemas["PollRequestInput"]["required"] == list(model.REQUIRED_FIELDS)


def test_summary_schemas_list_stats_keys():
    schemas = build_document()["components"]["schemas"]

    assert list(schemas["DurationSummary"]["properties"]) == list(stats.DURATION_KEYS)
    assert set(schemas["LatencySummary"]["required"]) == {
        "count", "timeouts", "min", "max", *stats.LATENCY_FRACTIONS}


def test_limits_come_from_arguments():
    document = openapi.document("9.9.9", max_timeout_seconds=60.0,
                                min_frequency_seconds=0.25, max_body_bytes=1000)
    fields = document["components"]["schemas"]["PollRequestInput"]["properties"]

    assert document["info"]["version"] == "9.9.9"
    assert fields["timeout"]["maximum"] == 60.0
    assert fields["timeout"]["exclusiveMinimum"] is True
    assert fields["frequency"]["minimum"] == 0.25
    assert fields["frequency"]["maximum"] == 60.0
    assert "1000 bytes" in document["paths"]["/requests"]["post"]["description"]


VALID_BODY = {
    "nameserver": LOOPBACK_NAMESERVER,
    "port": CLOSED_PORT,
    "zone_name": "hello.com.",
    "serial": 1,
    "start_time": 1421867419,
    "timeout": 1,
    "frequency": 1,
    "condition": "serial_not_lower",
}


@pytest.mark.parametrize("field, schema_key, accepted, rejected", [
    ("port", "minimum", 1, 0),
    ("port", "maximum", 65535, 65536),
    ("serial", "minimum", 0, -1),
    ("serial", "maximum", 2**32 - 1, 2**32),
    ("start_time", "minimum", 0, -0.001),
    ("start_time", "maximum", model.MAX_START_TIME, model.MAX_START_TIME + 1),
    ("timeout", "maximum", LIMITS["max_timeout_seconds"], LIMITS["max_timeout_seconds"] + 0.01),
    ("frequency", "minimum", LIMITS["min_frequency_seconds"],
     LIMITS["min_frequency_seconds"] - 0.01),
    ("frequency", "maximum", LIMITS["max_timeout_seconds"], LIMITS["max_timeout_seconds"] + 0.01),
])
def test_body_bounds_match_validation(client, field, schema_key, accepted, rejected):
    schema = build_document()["components"]["schemas"]["PollRequestInput"]["properties"][field]

    accepted_result = client.simulate_post("/requests", json={**VALID_BODY, field: accepted})
    rejected_result = client.simulate_post("/requests", json={**VALID_BODY, field: rejected})

    assert schema[schema_key] == accepted
    assert accepted_result.status_code == 202, accepted_result.text
    assert rejected_result.status_code == 400, rejected_result.text


def test_timeout_exclusive_minimum_matches_validation(client):
    result = client.simulate_post("/requests", json={**VALID_BODY, "timeout": 0})

    assert result.status_code == 400
    assert "greater than 0" in result.json["description"]


@pytest.mark.parametrize("name, accepted, rejected", [
    ("limit", selection.MAX_PAGE_SIZE, selection.MAX_PAGE_SIZE + 1),
    ("limit", 1, 0),
    ("offset", openapi.MAX_OFFSET, openapi.MAX_OFFSET + 1),
    ("offset", 0, -1),
])
def test_paging_bounds_match_validation(client, name, accepted, rejected):
    accepted_result = client.simulate_get("/requests", params={name: str(accepted)})
    rejected_result = client.simulate_get("/requests", params={name: str(rejected)})

    assert accepted_result.status_code == 200, accepted_result.text
    assert rejected_result.status_code == 400, rejected_result.text


def test_resource_serves_document():
    document = build_document()
    falcon_app = falcon.App()
    falcon_app.add_route("/openapi.json", openapi.OpenApiResource(document))

    result = falcon.testing.TestClient(falcon_app).simulate_get("/openapi.json")

    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("application/json")
    assert result.json == document


def test_service_serves_document_with_its_limits(service):
    response = requests.get(service.url + "/openapi.json", headers=AUTHORIZATION, timeout=5)

    assert response.status_code == 200
    assert response.json() == build_document()


def test_service_requires_token_where_documented(service):
    document = build_document()

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            url = service.url + path.replace("{request_id}", "x").replace("{kind}", "latency")
            response = requests.request(method, url, timeout=5)

            if operation.get("security") == []:
                assert response.status_code == 200, (method, path)
            else:
                assert response.status_code == 401, (method, path)
                assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)
                assert set(response.json()) >= {"title", "description"}, (method, path)


# No deadline, because a summary or plot takes about a second in its child process.
HYPOTHESIS_SETTINGS = {"deadline": None}


def call_and_validate(case, service):
    """Send a case to the live service with the token, check the response and return it."""
    return case.call_and_validate(base_url=service.url, headers=AUTHORIZATION, checks=CHECKS,
                                  timeout=30)


@SCHEMA.exclude(path_regex=ANALYSIS_PATHS).parametrize()
@hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, **HYPOTHESIS_SETTINGS)
def test_live_service_conforms(case, service):
    case.body = keep_queries_on_loopback(case.body)

    response = call_and_validate(case, service)

    if response.status_code == 202:
        assert ipaddress.ip_address(response.json()["nameserver"]).is_loopback
        assert response.json()["port"] == CLOSED_PORT


@SCHEMA.include(path_regex=ANALYSIS_PATHS).parametrize()
@hypothesis.settings(max_examples=EXAMPLES_PER_ANALYSIS_OPERATION, **HYPOTHESIS_SETTINGS)
def test_live_analysis_conforms(case, service):
    call_and_validate(case, service)


def wait_until_done(service, request_id, timeout_seconds=10):
    """Read a record, with the token, until its status leaves ACCEPTED; return it."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = requests.get(f"{service.url}/requests/{request_id}",
                                headers=AUTHORIZATION, timeout=5)
        response.raise_for_status()
        record = response.json()
        if record["status"] != "ACCEPTED" or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fake_nameservers():
    """Fake nameservers on 127.0.0.1 and ::1 serving every zone at serial 1."""
    with FakeNameserver("127.0.0.1") as ipv4, FakeNameserver("::1") as ipv6:
        yield {"127.0.0.1": ipv4.port, "::1": ipv6.port}


# One valid body per condition. Against a fake nameserver that serves every
# zone at serial 1 with no other records, the first two and the last end
# COMPLETED, and the others ERROR when their timeout passes.
LIFECYCLE_BODIES = [
    {"condition": "serial_not_lower", "serial": 1},
    {"condition": "zone_exists", "nameserver": "::1"},
    {"condition": "zone_removed", "protocol": "tcp"},
    {"condition": "record_present", "rdatatype": "A", "rdata": "127.0.0.2"},
    {"condition": "record_removed", "record_name": "www.hello.com.", "rdatatype": "MX"},
]
LIFECYCLE_STATUSES = ["COMPLETED", "COMPLETED", "ERROR", "ERROR", "COMPLETED"]


def test_live_records_conform_after_polling(service, fake_nameservers):
    start_time = time.time()
    ids = []
    for changes in LIFECYCLE_BODIES:
        body = {**VALID_BODY, "start_time": start_time, "timeout": 1,
                "frequency": LIMITS["min_frequency_seconds"], "serial": None, **changes}
        body["port"] = fake_nameservers[body["nameserver"]]
        case = SCHEMA["/requests"]["POST"].Case(body=body)
        ids.append(call_and_validate(case, service).json()["id"])

    records = [wait_until_done(service, request_id) for request_id in ids]
    for request_id in ids:
        call_and_validate(SCHEMA["/requests/{request_id}"]["GET"].Case(
            path_parameters={"request_id": request_id}), service)
    # Wait for the service to store the query round-trip times of the polls.
    time.sleep(SERVICE_SETTINGS["LATENCY_FLUSH_SECONDS"] * 3)
    window = {"start": start_time, "end": start_time + 1}
    page = call_and_validate(SCHEMA["/requests"]["GET"].Case(
        query={**window, "limit": 2}), service)
    csv_export = call_and_validate(SCHEMA["/requests"]["GET"].Case(
        query={**window, "format": "csv"}), service)
    summary = call_and_validate(SCHEMA["/stats"]["GET"].Case(query=window), service).json()

    assert [record["status"] for record in records] == LIFECYCLE_STATUSES
    # schemathesis' Response keeps each header as a list, under its lowercase name.
    assert page.headers["link"][0].endswith("&offset=2>; rel=next")
    assert csv_export.text.count("\n") == len(ids) + 1
    assert summary["overall"]["completed"] == LIFECYCLE_STATUSES.count("COMPLETED")
    assert summary["overall"]["duration"]["count"] == LIFECYCLE_STATUSES.count("COMPLETED")
    assert set(summary["by_condition"]) == set(model.CONDITIONS)
    assert set(summary["latency"]) == {"127.0.0.1", "::1"}

