"""Poll requests in Redis, for deployments that share or outgrow one file."""

import json
import urllib.parse

import redis

from digaas import model
from digaas import storage

# Set the given fields of a hash only if the hash exists, in one step, so a
# result never recreates a request that was deleted.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('HSET', KEYS[1], unpack(ARGV))
end
return -1
"""


class RedisStorage(storage.Storage):
    """Each request is a hash under <prefix>:request:<id>.

    Each hash field holds the JSON text of one value. JSON keeps the type of
    every value and writes floats with Python's repr, so each float reads back
    as exactly the same float. A sorted set <prefix>:requests:by_start_time
    indexes the ids by start_time.
    """

    def __init__(self, url, *, key_prefix):
        self.url = redact_password(url)
        self._key_prefix = key_prefix
        try:
            self._redis = redis.Redis.from_url(url)
        except ValueError as error:
            raise storage.StorageError(f"invalid REDIS_URL {self.url!r}: {error}") from error
        self._update_if_exists = self._redis.register_script(_UPDATE_IF_EXISTS)

    def _request_key(self, request_id):
        return f"{self._key_prefix}:request:{request_id}"

    def _start_time_key(self):
        return f"{self._key_prefix}:requests:by_start_time"

    def create(self, request):
        fields = {name: json.dumps(value) for name, value in request.to_dict().items()}
        pipeline = self._redis.pipeline(transaction=True)
        pipeline.hset(self._request_key(request.id), mapping=fields)
        pipeline.zadd(self._start_time_key(), {request.id: request.start_time})
        self._run(pipeline.execute, "store request")

    def get(self, request_id):
        fields = self._run(lambda: self._redis.hgetall(self._request_key(request_id)),
                           "read request")
        if not fields:
            return None
        values = {name.decode(): json.loads(text) for name, text in fields.items()}
        return model.PollRequest.from_dict(values)

    def update_result(self, request):
        values = request.to_dict()
        arguments = []
        for name in model.RESULT_FIELDS:
            arguments += [name, json.dumps(values[name])]
        self._run(lambda: self._update_if_exists(keys=[self._request_key(request.id)],
                                                 args=arguments),
                  "store result")

    def close(self):
        self._redis.close()

    def _run(self, operation, description):
        try:
            return operation()
        except redis.RedisError as error:
            raise storage.StorageError(
                f"redis {self.url}: {description} failed: {error}") from error


def redact_password(url):
    """Return the URL with its password, if any, replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
