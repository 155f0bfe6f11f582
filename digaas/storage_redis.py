"""Poll requests in Redis, for deployments that share or outgrow one file."""

import json
import math
import urllib.parse

import redis

from digaas import latency
from digaas import model
from digaas import storage

# Set the given fields of a request's hash only if the hash exists, in one
# step, so a result never recreates a request that was deleted, and keep
# the set of ACCEPTED ids in step. KEYS: the hash and the set. ARGV: the
# status, the id, then field and value pairs.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return -1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[1] == 'ACCEPTED' then
    redis.call('SADD', KEYS[2], ARGV[2])
else
    redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
"""

# Add one histogram to the stored one: HINCRBY each bin and the timeouts,
# keep the lower min and the higher max. KEYS[1] is the histogram hash,
# KEYS[2] the index of buckets, ARGV[1] its member, ARGV[2] the bucket
# start, ARGV[3..5] timeouts, min and max ("" when nothing was answered),
# then pairs of bin field and count.
_ADD_HISTOGRAM = """
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'timeouts', ARGV[3])
if ARGV[4] ~= '' then
    local low = redis.call('HGET', KEYS[1], 'min')
    if not low or tonumber(ARGV[4]) < tonumber(low) then
        redis.call('HSET', KEYS[1], 'min', ARGV[4])
    end
    local high = redis.call('HGET', KEYS[1], 'max')
    if not high or tonumber(ARGV[5]) > tonumber(high) then
        redis.call('HSET', KEYS[1], 'max', ARGV[5])
    end
end
for index = 6, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[index], ARGV[index + 1])
end
return 1
"""

# Read the given fields of many request hashes and return the text of one
# JSON array with a row per hash. A row is an array of the stored JSON
# values in ARGV order, with null for a missing field. A hash that no longer
# exists gives a null row. One reply decoded by one json.loads costs far
# less than one reply per hash. KEYS: the hashes. ARGV: the fields.
_READ_ROWS_AS_JSON = """
local rows = {}
for index, key in ipairs(KEYS) do
    local values = redis.call('HMGET', key, unpack(ARGV))
    local found = false
    for field = 1, #ARGV do
        if values[field] then
            found = true
        else
            values[field] = 'null'
        end
    end
    if found then
        rows[index] = '[' .. table.concat(values, ',') .. ']'
    else
        rows[index] = 'null'
    end
end
return '[' .. table.concat(rows, ',') .. ']'
"""

# Requests read from Redis at a time while streaming a selection.
FETCH_REQUESTS = 1000


class RedisStorage(storage.Storage):
    """Each request is a hash under <prefix>:request:<id>.

    Each hash field holds the JSON text of one value. JSON keeps the type of
    every value and writes floats with Python's repr, so each float reads back
    as exactly the same float. A sorted set <prefix>:requests:by_start_time
    indexes the ids by start_time.
    """

    def __init__(self, url, *, key_prefix, socket_timeout_seconds=5.0):
        self.url = redact_password(url)
        self._key_prefix = key_prefix
        try:
            self._redis = redis.Redis.from_url(
                url, socket_timeout=socket_timeout_seconds,
                socket_connect_timeout=socket_timeout_seconds)
        except ValueError as error:
            raise storage.StorageError(f"invalid REDIS_URL {self.url!r}: {error}") from error
        self._update_if_exists = self._redis.register_script(_UPDATE_IF_EXISTS)
        self._add_histogram = self._redis.register_script(_ADD_HISTOGRAM)
        self._read_rows_as_json = self._redis.register_script(_READ_ROWS_AS_JSON)

    def _request_key(self, request_id):
        return f"{self._key_prefix}:request:{request_id}"

    def _start_time_key(self):
        return f"{self._key_prefix}:requests:by_start_time"

    def _accepted_key(self):
        return f"{self._key_prefix}:requests:accepted"

    def check(self):
        self._run(self._redis.ping, "check")

    def create(self, request):
        self.create_many([request])

    def create_many(self, requests):
        pipeline = self._redis.pipeline(transaction=True)
        for request in requests:
            fields = {name: json.dumps(value) for name, value in request.to_dict().items()}
            pipeline.hset(self._request_key(request.id), mapping=fields)
            pipeline.zadd(self._start_time_key(), {request.id: request.start_time})
            if request.status == model.ACCEPTED:
                pipeline.sadd(self._accepted_key(), request.id)
        self._run(pipeline.execute, "store request")

    def get(self, request_id):
        fields = self._run(lambda: self._redis.hgetall(self._request_key(request_id)),
                           "read request")
        if not fields:
            return None

        # Every field name is a plain identifier and every value a JSON text,
        # so the hash joins into one JSON object. One json.loads per field
        # was the larger part of a GET's cost.
        text = b"{" + b",".join(b'"%s":%s' % item for item in fields.items()) + b"}"
        return model.PollRequest.from_dict(json.loads(text))

    def update_results(self, requests):
        pipeline = self._redis.pipeline(transaction=False)
        for request in requests:
            keys, arguments = self._result_arguments(request)
            self._update_if_exists(keys=keys, args=arguments, client=pipeline)
        written = self._run(pipeline.execute, "store results")
        return {request.id for request, result in zip(requests, written) if result == -1}

    def _result_arguments(self, request):
        arguments = [request.status, request.id]
        for name in model.RESULT_FIELDS:
            arguments += [name, json.dumps(getattr(request, name))]
        return [self._request_key(request.id), self._accepted_key()], arguments

    def update_result(self, request):
        keys, arguments = self._result_arguments(request)
        written = self._run(lambda: self._update_if_exists(keys=keys, args=arguments),
                            "store result")
        if written == -1:
            raise storage.RequestNotFound(f"redis {self.url}: request {request.id} not found")

    def iter_accepted(self):
        ids = self._run(lambda: self._redis.smembers(self._accepted_key()),
                        "read accepted requests")
        for request_id in ids:
            request = self.get(request_id.decode())
            if request is not None and request.status == model.ACCEPTED:
                yield request

    def iter_requests(self, query):
        for row in self.iter_columns(query, model.FIELD_NAMES):
            yield model.PollRequest.from_dict(dict(zip(model.FIELD_NAMES, row)))

    def iter_columns(self, query, columns):
        for column in columns:
            if column not in model.FIELD_NAMES:
                raise ValueError(f"unknown request field {column!r}")

        filters = {field: getattr(query, field) for field in ("status", "nameserver", "condition")
                   if getattr(query, field) is not None}
        fetched = list(columns) + [field for field in filters if field not in columns]
        low = "-inf" if query.start == -math.inf else repr(float(query.start))
        high = "+inf" if query.end == math.inf else "(" + repr(float(query.end))
        skip = query.offset
        remaining = query.limit
        # Each page continues from the last score read, skipping the ids
        # already read at that score, so that reading N requests costs
        # O(N log N) and not O(N**2) as pages counted from the window start do.
        last_score = None
        read_at_last_score = 0

        while remaining is None or remaining > 0:
            # ZRANGEBYSCORE orders equal scores by member, so by id.
            page_low = low if last_score is None else repr(last_score)
            page = self._run(lambda: self._redis.zrangebyscore(
                self._start_time_key(), page_low, high, start=read_at_last_score,
                num=FETCH_REQUESTS, withscores=True), "read requests")
            if not page:
                return

            ids = []
            for request_id, score in page:
                ids.append(request_id)
                if score == last_score:
                    read_at_last_score += 1
                else:
                    last_score, read_at_last_score = score, 1

            keys = [self._request_key(request_id.decode()) for request_id in ids]
            text = self._run(lambda: self._read_rows_as_json(keys=keys, args=fetched),
                             "read requests")
            for row in json.loads(text):
                if row is None:
                    continue   # deleted between the two reads
                values = dict(zip(fetched, row))
                if any(values[field] != value for field, value in filters.items()):
                    continue
                if skip:
                    skip -= 1
                    continue
                yield tuple(values[column] for column in columns)
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    def _latency_key(self, bucket_start, nameserver):
        return f"{self._key_prefix}:latency:{bucket_start}:{nameserver}"

    def _latency_index_key(self):
        return f"{self._key_prefix}:latency:buckets"

    def add_latency(self, histograms):
        pipeline = self._redis.pipeline(transaction=True)
        for histogram in histograms:
            answered = histogram.answered > 0
            arguments = [f"{histogram.bucket_start}:{histogram.nameserver}",
                         histogram.bucket_start, histogram.timeouts,
                         repr(histogram.min_seconds) if answered else "",
                         repr(histogram.max_seconds) if answered else ""]
            for index, count in histogram.counts.items():
                arguments += [f"bin:{index}", count]
            self._add_histogram(
                keys=[self._latency_key(histogram.bucket_start, histogram.nameserver),
                      self._latency_index_key()],
                args=arguments, client=pipeline)
        self._run(pipeline.execute, "store latency")

    def iter_latency(self, start, end, nameserver=None):
        low = "-inf" if start == -math.inf else repr(float(start))
        high = "+inf" if end == math.inf else "(" + repr(float(end))
        members = self._run(lambda: self._redis.zrangebyscore(
            self._latency_index_key(), low, high), "read latency")

        for member in members:
            bucket_text, name = member.decode().split(":", 1)
            if nameserver is not None and name != nameserver:
                continue
            fields = self._run(lambda: self._redis.hgetall(
                self._latency_key(bucket_text, name)), "read latency")
            histogram = latency.Histogram(name, int(bucket_text))
            for field, value in fields.items():
                field = field.decode()
                if field.startswith("bin:"):
                    histogram.counts[int(field[4:])] = int(value)
                elif field == "timeouts":
                    histogram.timeouts = int(value)
                elif field == "min":
                    histogram.min_seconds = float(value)
                elif field == "max":
                    histogram.max_seconds = float(value)
            yield histogram

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
