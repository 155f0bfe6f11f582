"""The interface shared by the storage backends, and the choice between them."""

import abc


class StorageError(Exception):
    """The storage backend failed; the message says which operation and why."""


class Storage(abc.ABC):
    """Where poll requests and their results are kept."""

    @abc.abstractmethod
    def create(self, request):
        """Store a new request. Raises StorageError if it cannot be stored."""

    @abc.abstractmethod
    def get(self, request_id):
        """Return the PollRequest with that id, or None if there is none."""

    @abc.abstractmethod
    def update_result(self, request):
        """Write the status and result fields of a stored request."""

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
        return storage_redis.RedisStorage(config.REDIS_URL, key_prefix=config.REDIS_KEY_PREFIX)

    raise ValueError(
        f"invalid STORAGE {config.STORAGE!r}: use sqlite or redis (DIGAAS_STORAGE)")
