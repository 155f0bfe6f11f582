"""The interface shared by the storage backends, and the choice between them."""

import abc
import dataclasses
import math


class StorageError(Exception):
    """The storage backend failed; the message says which operation and why."""


@dataclasses.dataclass(frozen=True)
class RequestQuery:
    """A selection of stored requests: a start_time window and filters.

    The window is half-open: start <= start_time < end. Rows come sorted by
    start_time, then id; offset skips that many matching rows and limit
    caps how many come back (None: all).
    """

    start: float = -math.inf
    end: float = math.inf
    status: str | None = None
    nameserver: str | None = None
    condition: str | None = None
    offset: int = 0
    limit: int | None = None


class RequestNotFound(StorageError):
    """A result was written for a request that the storage does not have."""


class Storage(abc.ABC):
    """Backend that keeps poll requests, their results and query latencies."""

    def create_many(self, requests, json_texts=None):
        """Store several new requests at once, all or none. Raises StorageError.

        json_texts, when given, contains each request's to_json(), which the
        caller has made already. This version stores one at a time and
        ignores it; backends write the requests in one step.
        """
        for request in requests:
            self.create(request)

    def update_results(self, requests):
        """Write the result fields of several requests; return the set of ids not stored.

        Raises StorageError, and then writes none of them, when the storage
        fails. This version writes one at a time; backends batch them.
        """
        missing = set()
        for request in requests:
            try:
                self.update_result(request)
            except RequestNotFound:
                missing.add(request.id)
        return missing

    @abc.abstractmethod
    def check(self):
        """Do a cheap round trip to the backend. Raises StorageError if it fails."""

    @abc.abstractmethod
    def create(self, request):
        """Store a new request. Raises StorageError if it cannot be stored."""

    @abc.abstractmethod
    def get(self, request_id):
        """Return the PollRequest with that id, or None if there is none."""

    def get_json(self, request_id):
        """Return the request with that id as its to_json() text, or None.

        GET /requests/{id} sends this text as it is. This version encodes
        what get() returns; backends keep the text and read it back.
        """
        request = self.get(request_id)
        return None if request is None else request.to_json()

    @abc.abstractmethod
    def update_result(self, request):
        """Write the status and result fields of a stored request.

        Raises RequestNotFound when the request is not stored (a Redis that
        restarted without persistence, a database file replaced).
        """

    @abc.abstractmethod
    def iter_accepted(self):
        """Yield every request still ACCEPTED, in no particular order."""

    @abc.abstractmethod
    def iter_requests(self, query):
        """Yield the PollRequests that match a RequestQuery, in its order."""

    @abc.abstractmethod
    def iter_columns(self, query, columns):
        """Yield a tuple of the named fields for each request that matches."""

    @abc.abstractmethod
    def add_latency(self, histograms):
        """Add latency.Histogram counts to the stored ones of the same nameserver and bucket."""

    @abc.abstractmethod
    def iter_latency(self, start, end, nameserver=None):
        """Yield the stored latency.Histogram of each bucket that starts in [start, end)."""

    @abc.abstractmethod
    def close(self):
        """Release connections and files."""


def open_storage(config):
    """Return the storage backend that config.STORAGE names."""
    if config.STORAGE == "sqlite":
        from digaas import storage_sqlite
        return storage_sqlite.SqliteStorage(
            config.SQLITE_PATH, busy_timeout_seconds=config.SQLITE_BUSY_TIMEOUT_SECONDS)

    if config.STORAGE == "redis":
        from digaas import storage_redis
        return storage_redis.RedisStorage(
            config.REDIS_URL, key_prefix=config.REDIS_KEY_PREFIX,
            socket_timeout_seconds=config.REDIS_SOCKET_TIMEOUT_SECONDS)

    raise ValueError(
        f"invalid STORAGE {config.STORAGE!r}: use sqlite or redis (DIGAAS_STORAGE)")
