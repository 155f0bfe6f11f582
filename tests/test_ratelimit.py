import pytest

from digaas import ratelimit


def test_first_query_waits_nothing():
    limiter = ratelimit.QueryRateLimiter(10)

    assert limiter.reserve("192.0.2.1", now=100.0) == 0.0


def test_burst_is_spaced_by_interval():
    limiter = ratelimit.QueryRateLimiter(10)

    waits = [limiter.reserve("192.0.2.1", now=100.0) for _ in range(4)]

    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_nameservers_are_independent():
    limiter = ratelimit.QueryRateLimiter(10)

    limiter.reserve("192.0.2.1", now=100.0)

    assert limiter.reserve("192.0.2.2", now=100.0) == 0.0


def test_idle_time_is_not_saved_up():
    limiter = ratelimit.QueryRateLimiter(10)
    limiter.reserve("192.0.2.1", now=100.0)

    first = limiter.reserve("192.0.2.1", now=200.0)
    second = limiter.reserve("192.0.2.1", now=200.0)

    assert first == 0.0
    assert second == pytest.approx(0.1)
