"""Shared fixtures: a real BIND9 and a real redis-server, both on loopback."""

import shutil
import subprocess
import time
import uuid

import pytest
import redis

from digaas.localbind import LocalBind, free_port

REDIS_START_TIMEOUT_SECONDS = 10.0
REDIS_STOP_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="session")
def bind(tmp_path_factory):
    """A LocalBind shared by the whole session. Tests stay apart by using unique zones."""
    with LocalBind(str(tmp_path_factory.mktemp("bind"))) as server:
        yield server


@pytest.fixture
def unique_zone():
    """A zone name no other test uses, such as "t0123456789ab.test."."""
    return f"t{uuid.uuid4().hex[:12]}.test."


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of a redis-server started for this session, without persistence."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server not found in PATH; install it (on Debian: apt-get install redis-server)")

    data_dir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = data_dir / "redis.log"
    command = [
        redis_server,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--logfile", str(log_path),
        "--daemonize", "no",
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"

    try:
        _wait_for_redis(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=REDIS_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_redis(url, process, log_path):
    deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
    client = redis.Redis.from_url(url, socket_timeout=1.0)

    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"redis-server exited with status {process.returncode} during startup; "
                            f"log {log_path}:\n{_read_tail(log_path)}")
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                pass

            if time.monotonic() >= deadline:
                pytest.fail(f"redis-server at {url} did not answer PING within "
                            f"{REDIS_START_TIMEOUT_SECONDS} seconds; log {log_path}:\n{_read_tail(log_path)}")
            time.sleep(0.05)
    finally:
        client.close()


def _read_tail(path, line_count=20):
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(lines[-line_count:])


@pytest.fixture
def redis_flushed(redis_url):
    """The session's redis URL, with database 0 flushed before the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url
