"""End to end: the real uwsgi server polling a real BIND9, on both storages."""

import sqlite3
import threading
import time

import pytest
import redis
import requests

from digaas.localservice import LocalService

SETTINGS = {"MIN_FREQUENCY_SECONDS": 0.05, "DNS_QUERY_TIMEOUT_SECONDS": 0.5}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def service(request, tmp_path_factory):
    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")

    server = LocalService(tmp_path_factory.mktemp(f"service-{request.param}"),
                         storage=request.param, redis_url=redis_url, settings=SETTINGS)
    server.start()
    yield server
    server.stop()


def stored_count(service):
    if service.storage == "sqlite":
        with sqlite3.connect(service.sqlite_path) as connection:
            return connection.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    return len(redis.Redis.from_url(service.redis_url).keys("digaas:request:*"))


def poll_body(bind, zone, **changes):
    body = {
        "nameserver": "127.0.0.1",
        "port": bind.port,
        "zone_name": zone,
        "serial": 1,
        "start_time": time.time(),
        "timeout": 5,
        "frequency": 0.2,
        "condition": "serial_not_lower",
    }
    body.update(changes)
    return body


def test_root_answers_with_version(service):
    response = requests.get(service.url + "/", timeout=5)

    assert response.status_code == 200
    assert response.json()["service"] == "digaas"


def test_zone_at_serial_completes_first_query(service, bind, unique_zone):
    bind.add_zone(unique_zone, serial=100)
    body = poll_body(bind, unique_zone, serial=100)

    accepted = service.post(body)
    record = service.wait_until_done(accepted.json()["id"], timeout_seconds=10)

    assert accepted.status_code == 202
    assert record["status"] == "COMPLETED"
    assert record["queries"] == 1
    assert record["last_serial"] == 100
    assert record["last_rcode"] == "NOERROR"
    assert record["last_miss_at"] is None
    assert record["duration"] == pytest.approx(record["completed_at"] - body["start_time"])
    assert 0 <= record["duration"] < body["timeout"]


def test_serial_bump_during_poll(service, bind, unique_zone):
    bind.add_zone(unique_zone, serial=10)
    body = poll_body(bind, unique_zone, serial=11, timeout=10, frequency=0.2)
    request_id = service.post(body).json()["id"]

    time.sleep(1.0)
    before_bump = time.time()
    bind.set_serial(unique_zone, 11)
    after_bump = time.time()
    record = service.wait_until_done(request_id, timeout_seconds=15)

    assert record["status"] == "COMPLETED"
    assert record["last_serial"] == 11
    assert record["queries"] >= 4
    # The true propagation time lies between the last miss and the completion,
    # and the bump happened inside that bracket.
    assert record["last_miss_at"] <= after_bump
    assert record["completed_at"] >= before_bump
    assert record["duration"] >= before_bump - body["start_time"]
    # One poll interval plus generous room for a slow shared machine.
    assert record["duration"] <= after_bump - body["start_time"] + body["frequency"] + 1.0


def test_deleted_zone_completes_zone_removed(service, bind, unique_zone):
    bind.add_zone(unique_zone, serial=5)
    body = poll_body(bind, unique_zone, condition="zone_removed", timeout=10)
    del body["serial"]
    request_id = service.post(body).json()["id"]

    time.sleep(0.5)
    assert service.get(request_id).json()["status"] == "ACCEPTED"
    bind.delete_zone(unique_zone)
    record = service.wait_until_done(request_id, timeout_seconds=15)

    assert record["status"] == "COMPLETED"
    assert record["last_rcode"] in ("REFUSED", "NXDOMAIN", "NOTAUTH", "NOERROR")
    assert record["queries"] >= 2
    assert record["serial"] is None


def test_missing_zone_ends_error_at_timeout(service, bind, unique_zone):
    body = poll_body(bind, unique_zone, timeout=1.5, frequency=0.3)
    accepted_at = time.time()
    request_id = service.post(body).json()["id"]

    time.sleep(0.5)
    assert service.get(request_id).json()["status"] == "ACCEPTED"
    record = service.wait_until_done(request_id, timeout_seconds=10)
    finished_at = time.time()

    assert record["status"] == "ERROR"
    assert record["duration"] is None
    assert finished_at - accepted_at >= body["timeout"]
    assert record["error"].startswith("timed out after 1.5 s")
    assert record["last_rcode"] == "REFUSED"
    # Fixed rate: slots at 0, 0.3, ..., 1.2 s fit in the 1.5 s timeout.
    assert record["queries"] == 5


def test_ipv6_nameserver(service, bind, unique_zone):
    bind.add_zone(unique_zone, serial=7)
    body = poll_body(bind, unique_zone, nameserver="::1", serial=7)

    record = service.wait_until_done(service.post(body).json()["id"], timeout_seconds=10)

    assert record["status"] == "COMPLETED"
    assert record["nameserver"] == "::1"


def test_post_without_content_type(service, bind, unique_zone):
    import json

    body = poll_body(bind, unique_zone, condition="zone_removed")

    response = requests.post(service.url + "/requests", data=json.dumps(body), timeout=5)

    assert "Content-Type" not in response.request.headers
    assert response.status_code == 202
    assert response.json()["zone_name"] == unique_zone


@pytest.mark.parametrize("changes, field", [
    ({"timeout": 0}, "timeout"),
    ({"frequency": "fast"}, "frequency"),
    ({"nameserver": "localhost"}, "nameserver"),
    ({"serial": -5}, "serial"),
    ({"condition": "serial_higher"}, "condition"),
    ({"unexpected": True}, "unexpected"),
])
def test_bad_input_stores_nothing(service, bind, unique_zone, changes, field):
    before = stored_count(service)

    response = service.post(poll_body(bind, unique_zone, **changes))

    assert response.status_code == 400
    assert field in response.json()["description"]
    assert stored_count(service) == before


def test_invalid_json_is_400(service):
    before = stored_count(service)

    response = requests.post(service.url + "/requests", data=b"{'single': quotes}", timeout=5)

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["description"]
    assert "Traceback" not in response.text
    assert stored_count(service) == before


def test_unknown_id_is_404(service):
    response = service.get("d1b0a0c4-7a4f-4f0e-9a43-4b3f0a2f7e11")

    assert response.status_code == 404
    assert response.json()["title"] == "Poll request not found"


def test_sigterm_stops_server(tmp_path):
    server = LocalService(tmp_path, settings=SETTINGS).start()

    status = server.stop()

    assert status is not None
    assert server.process.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/", timeout=2)


def test_record_added_during_poll(service, bind, unique_zone):
    bind.add_zone(unique_zone)
    body = poll_body(bind, unique_zone, condition="record_present",
                     record_name=f"www.{unique_zone}", rdatatype="AAAA",
                     rdata="2001:DB8:0::53", timeout=10)
    del body["serial"]
    request_id = service.post(body).json()["id"]

    time.sleep(0.5)
    before_change = time.time()
    bind.add_record(unique_zone, "www", "AAAA", "2001:db8::53")
    after_change = time.time()
    record = service.wait_until_done(request_id, timeout_seconds=15)

    assert record["status"] == "COMPLETED"
    assert record["last_miss_at"] <= after_change
    assert record["completed_at"] >= before_change
    assert record["last_serial"] is None
    assert record["rdata"] == "2001:DB8:0::53"


def test_record_removed_legacy_and_tcp(service, bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.9")
    present = poll_body(bind, unique_zone, condition="data=192.0.2.9",
                        record_name=f"www.{unique_zone}", rdatatype="A", protocol="tcp")
    removed = poll_body(bind, unique_zone, condition="record_removed",
                        record_name=f"www.{unique_zone}", rdatatype="A", timeout=10)
    del present["serial"], removed["serial"]

    present_record = service.wait_until_done(service.post(present).json()["id"], 10)
    removed_id = service.post(removed).json()["id"]
    time.sleep(0.5)
    bind.delete_record(unique_zone, "www", "A")
    removed_record = service.wait_until_done(removed_id, 15)

    assert present_record["status"] == "COMPLETED"
    assert present_record["condition"] == "record_present"
    assert present_record["protocol"] == "tcp"
    assert removed_record["status"] == "COMPLETED"
    assert removed_record["queries"] >= 2


def test_large_txt_set_completes(service, bind, unique_zone):
    bind.add_zone(unique_zone)
    texts = [f'"{index:03d}-' + "y" * 240 + '"' for index in range(24)]
    for text in texts:
        bind.add_record(unique_zone, "big", "TXT", text)
    body = poll_body(bind, unique_zone, condition="record_present",
                     record_name=f"big.{unique_zone}", rdatatype="TXT", rdata=texts[-1])
    del body["serial"]

    record = service.wait_until_done(service.post(body).json()["id"], timeout_seconds=10)

    assert record["status"] == "COMPLETED"
    assert record["queries"] == 1


def test_zone_exists_after_create(service, bind, unique_zone):
    body = poll_body(bind, unique_zone, condition="zone_exists", timeout=10)
    del body["serial"]
    request_id = service.post(body).json()["id"]

    time.sleep(0.5)
    bind.add_zone(unique_zone, serial=77)
    record = service.wait_until_done(request_id, timeout_seconds=15)

    assert record["status"] == "COMPLETED"
    assert record["last_serial"] == 77
    assert record["last_miss_at"] is not None


def test_refused_error_message(service, bind, unique_zone):
    body = poll_body(bind, unique_zone, timeout=0.5, frequency=0.2)

    record = service.wait_until_done(service.post(body).json()["id"], timeout_seconds=10)

    assert record["status"] == "ERROR"
    assert record["error"] == (f"timed out after 0.5 s: nameserver 127.0.0.1 port {bind.port}"
                               " refused 3 of 3 queries")


def test_chunked_body_is_411(service, bind, unique_zone):
    import json

    body = json.dumps(poll_body(bind, unique_zone)).encode()
    before = stored_count(service)

    response = requests.post(service.url + "/requests", data=iter([body]), timeout=5)

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 411
    assert "Content-Length" in response.json()["description"]
    assert stored_count(service) == before


def test_deep_nesting_is_400(service):
    response = requests.post(service.url + "/requests",
                             data='{"zone_name": ' + "[" * 20000 + "]" * 20000 + "}", timeout=5)

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["description"]


def test_kept_connections_lose_no_request(service, bind, unique_zone):
    # uwsgi's http-socket closes the connection after each response. Without
    # "Connection: close", a client that keeps connections sends its next
    # request into the closing socket and gets a reset.
    bind.add_zone(unique_zone, serial=1)
    before = stored_count(service)
    failures = []

    def post_many(count):
        with requests.Session() as session:
            for _ in range(count):
                try:
                    response = session.post(service.url + "/requests", timeout=10,
                                            json=poll_body(bind, unique_zone))
                except requests.ConnectionError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 202:
                    failures.append(f"{response.status_code} {response.text}")
                elif response.headers.get("Connection", "").lower() != "close":
                    failures.append(f"no Connection: close in {dict(response.headers)}")

    threads = [threading.Thread(target=post_many, args=(100,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert stored_count(service) == before + 800


@pytest.mark.parametrize("path", ["/stats", "/requests", "/plots/propagation_cdf.png"])
def test_long_query_string_is_400(service, path):
    # uwsgi closes the connection without a response when the request line
    # does not fit its buffer, 4096 bytes by default.
    name = "x" * 10000

    response = requests.get(service.url + path, params={name: "1", "start": "0", "end": "1"},
                            timeout=10)

    assert response.status_code == 400
    assert "accepted query parameters are" in response.json()["description"]
