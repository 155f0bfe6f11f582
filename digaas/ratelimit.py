"""A cap on the DNS queries per second that one process sends to one nameserver.

A harness that posts too many requests, by mistake or on purpose, must not
turn digaas into a flood. Each nameserver has a schedule of query slots
1 / rate seconds apart (the generic cell rate algorithm without burst): a
query takes the next free slot and waits until it comes.
"""


class QueryRateLimiter:
    """Hands out query slots per nameserver, at most max_per_second each."""

    def __init__(self, max_per_second):
        self._interval_seconds = 1.0 / max_per_second
        self._next_free = {}

    def reserve(self, nameserver, now):
        """Take the next slot for a query to nameserver; return seconds to wait for it.

        now is a monotonic time. A query that decides not to wait still keeps
        its slot, so bursts stay capped either way.
        """
        slot = max(now, self._next_free.get(nameserver, now))
        self._next_free[nameserver] = slot + self._interval_seconds
        if len(self._next_free) > 10000:
            self._forget_idle(now)
        return slot - now

    def _forget_idle(self, now):
        self._next_free = {name: slot for name, slot in self._next_free.items() if slot > now}
