"""Restarts, crashes, overload and storage outages, with the real service."""

import concurrent.futures
import os
import pathlib
import signal
import subprocess
import time

import pytest
import requests

from digaas.localservice import LocalService
from fakens import FakeNameserver
from redisproc import RedisProcess

SETTINGS = {"MIN_FREQUENCY_SECONDS": 0.05, "DNS_QUERY_TIMEOUT_SECONDS": 0.3,
            "RESULT_RETRY_SECONDS": 0.2}


def start_service(workdir, storage, redis_url=None, port=None, **settings):
    return LocalService(workdir, storage=storage, redis_url=redis_url, port=port,
                        settings={**SETTINGS, **settings}).start()


def serial_body(bind, zone, serial, **changes):
    body = {"nameserver": "127.0.0.1", "port": bind.port, "zone_name": zone,
            "serial": serial, "start_time": time.time(), "timeout": 20, "frequency": 0.1,
            "condition": "serial_not_lower"}
    body.update(changes)
    return body


def worker_pids(service):
    found = subprocess.run(["pgrep", "-P", str(service.process.pid)],
                           capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture(params=["sqlite", "redis"])
def storage_and_url(request):
    if request.param == "sqlite":
        return "sqlite", None
    return "redis", request.getfixturevalue("redis_flushed")


def test_killed_worker_resumes_polls(tmp_path, bind, unique_zone, storage_and_url):
    storage, redis_url = storage_and_url
    bind.add_zone(unique_zone, serial=1)
    service = start_service(tmp_path, storage, redis_url)
    try:
        request_id = service.post(serial_body(bind, unique_zone, 2)).json()["id"]
        time.sleep(0.5)

        for pid in worker_pids(service):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
        before_bump = time.time()
        bind.set_serial(unique_zone, 2)
        record = service.wait_until_done(request_id, timeout_seconds=20)
    finally:
        service.stop()

    assert record["status"] == "COMPLETED"
    assert record["completed_at"] >= before_bump
    assert record["last_serial"] == 2
    assert "resuming the poll" in service.log_path.read_text()


def test_restarted_server_resumes_polls(tmp_path, bind, unique_zone, storage_and_url):
    storage, redis_url = storage_and_url
    bind.add_zone(unique_zone, serial=1)
    first = start_service(tmp_path, storage, redis_url)
    request_id = first.post(serial_body(bind, unique_zone, 2)).json()["id"]
    time.sleep(0.5)
    first.stop()
    # The stopped worker closed its storage, so sqlite removed its log files.
    wal_left = pathlib.Path(f"{first.sqlite_path}-wal").exists()
    stopped = requests.Session()

    saved = None
    second = start_service(tmp_path, storage, redis_url, port=first.port)
    try:
        saved = second.get(request_id).json()
        bind.set_serial(unique_zone, 2)
        record = second.wait_until_done(request_id, timeout_seconds=20)
    finally:
        second.stop()
        stopped.close()

    assert saved["queries"] >= 3
    assert record["status"] == "COMPLETED"
    assert record["queries"] > saved["queries"]
    assert not wal_left


def test_deadline_passed_while_down(tmp_path, bind, unique_zone, storage_and_url):
    storage, redis_url = storage_and_url
    first = start_service(tmp_path, storage, redis_url)
    request_id = first.post(serial_body(bind, unique_zone, 2, timeout=1.5)).json()["id"]
    time.sleep(0.3)
    first.stop()
    time.sleep(1.5)

    second = start_service(tmp_path, storage, redis_url, port=first.port)
    try:
        record = second.wait_until_done(request_id, timeout_seconds=10)
    finally:
        second.stop()

    assert record["status"] == "ERROR"
    assert record["error"].startswith("digaas was not running at the deadline")


def test_max_in_flight_rejects_more(tmp_path, bind, unique_zone):
    bind.add_zone(unique_zone, serial=1)
    service = start_service(tmp_path, "sqlite", MAX_IN_FLIGHT=3)
    try:
        accepted = [service.post(serial_body(bind, unique_zone, 2, timeout=3)).json()["id"]
                    for _ in range(3)]
        rejected = service.post(serial_body(bind, unique_zone, 2))
        listed = requests.get(service.url + "/requests", timeout=5).json()
        bind.set_serial(unique_zone, 2)
        records = [service.wait_until_done(request_id, 10) for request_id in accepted]
        after = service.post(serial_body(bind, unique_zone, 2))
    finally:
        service.stop()

    assert rejected.status_code == 503
    assert rejected.headers["Retry-After"] == "1"
    assert "MAX_IN_FLIGHT" in rejected.json()["description"]
    assert len(listed) == 3
    assert [record["status"] for record in records] == ["COMPLETED"] * 3
    assert after.status_code == 202


def test_redis_outage_is_503(tmp_path, bind, unique_zone, redis_process):
    bind.add_zone(unique_zone, serial=1)
    service = start_service(tmp_path, "redis", redis_process.url)
    try:
        request_id = service.post(serial_body(bind, unique_zone, 2)).json()["id"]
        time.sleep(0.3)

        redis_process.stop()
        during_post = service.post(serial_body(bind, unique_zone, 2))
        during_get = service.get(request_id)
        during_root = requests.get(service.url + "/", timeout=10)
        bind.set_serial(unique_zone, 2)
        time.sleep(1.0)          # the poll completes while Redis is down
        redis_process.start()    # without persistence: the request is gone
        time.sleep(1.0)
        after = service.get(request_id)
    finally:
        service.stop()

    log = service.log_path.read_text()
    assert during_post.status_code == 503
    assert "nothing was stored" in during_post.json()["description"]
    assert during_get.status_code == 503
    assert during_root.status_code == 503
    assert after.status_code == 404
    assert "keeping it to retry" in log
    assert f"request {request_id}: the COMPLETED result was not stored" in log


def test_redis_restart_writes_result(tmp_path, bind, unique_zone):
    bind.add_zone(unique_zone, serial=1)
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_process = RedisProcess(redis_dir, persistent=True).start()
    service = start_service(tmp_path, "redis", redis_process.url)
    try:
        request_id = service.post(serial_body(bind, unique_zone, 2)).json()["id"]
        time.sleep(0.3)

        redis_process.stop()
        bind.set_serial(unique_zone, 2)
        time.sleep(1.0)          # the poll completes while Redis is down
        redis_process.start()
        record = service.wait_until_done(request_id, timeout_seconds=10)
    finally:
        service.stop()
        redis_process.stop()

    assert record["status"] == "COMPLETED"
    assert record["last_serial"] == 2
    assert "every queued result is stored" in service.log_path.read_text()


def test_sqlite_two_workers_no_lock_errors(tmp_path, bind, unique_zone):
    bind.add_zone(unique_zone, serial=1)
    service = start_service(tmp_path, "sqlite", PROCESSES=2)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(
                lambda _: service.post(serial_body(bind, unique_zone, 1, timeout=5)),
                range(300)))
        records = [service.wait_until_done(response.json()["id"], 20) for response in responses]
        owners = {record["owner"] for record in records}
    finally:
        service.stop()

    assert {response.status_code for response in responses} == {202}
    assert {record["status"] for record in records} == {"COMPLETED"}
    assert len(owners) == 2
    assert "database is locked" not in service.log_path.read_text()


def mount_tmpfs(path, size):
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")


def test_sqlite_full_disk_is_503(tmp_path, bind, unique_zone):
    disk = tmp_path / "small"
    mount_tmpfs(disk, "256k")
    service = start_service(disk, "sqlite")
    try:
        descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(descriptor, b"\0" * 4096)
        except OSError:
            pass   # the disk is full
        finally:
            os.close(descriptor)
        statuses = [service.post(serial_body(bind, unique_zone, 1, timeout=0.2)).status_code
                    for _ in range(200)]
        failed = service.post(serial_body(bind, unique_zone, 1))
    finally:
        service.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)

    assert 503 in statuses
    assert failed.status_code == 503
    assert "full" in failed.json()["description"]
    assert 500 not in statuses


def test_sqlite_read_only_is_503(tmp_path, bind, unique_zone):
    service = start_service(tmp_path, "sqlite")
    files = sorted(str(path) for path in tmp_path.glob("digaas.sqlite3*"))
    try:
        # Immutable files cannot be written even by root, unlike chmod 444.
        made_immutable = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
        if made_immutable.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {made_immutable.stderr.strip()}")
        response = service.post(serial_body(bind, unique_zone, 1))
        root = requests.get(service.url + "/", timeout=10)
    finally:
        subprocess.run(["chattr", "-i", *files], check=False)
        service.stop()

    assert response.status_code == 503
    assert "store request failed" in response.json()["description"], response.text
    assert root.status_code == 200   # reading still works


def test_rate_cap_delays_queries(tmp_path):
    with FakeNameserver() as fake, LocalService(
            tmp_path, settings={**SETTINGS, "MAX_QUERIES_PER_SECOND_PER_NAMESERVER": 10}) as service:
        bodies = [{"nameserver": fake.host, "port": fake.port, "zone_name": "cap.test.",
                   "serial": 9, "start_time": time.time(), "timeout": 2, "frequency": 0.05,
                   "condition": "serial_not_lower"} for _ in range(4)]
        ids = [service.post(body).json()["id"] for body in bodies]
        records = [service.wait_until_done(request_id, 10) for request_id in ids]

    queries = sum(record["queries"] for record in records)
    # Without the cap, 4 polls every 0.05 s for 2 s would send about 160.
    assert queries <= 10 * 2 + 4
    assert len(fake.queries) == queries
    assert all(record["rate_limit_delay_seconds"] > 0 for record in records)
