"""Shared fixtures: a real BIND9 and a real redis-server, both on loopback."""

import uuid

import pytest
import redis

from digaas.localbind import LocalBind
from redisproc import RedisProcess


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
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server.url
    server.stop()


@pytest.fixture
def redis_process(tmp_path):
    """A redis-server of the test's own, which the test may stop and start again."""
    server = RedisProcess(tmp_path)
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture
def redis_flushed(redis_url):
    """The session's redis URL, with database 0 flushed before the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url
