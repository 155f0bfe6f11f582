"""Poll requests in Redis, for deployments that share or outgrow one file."""

import dataclasses
import json
import json.encoder
import math
import urllib.parse

import redis

from digaas import latency
from digaas import model
from digaas import redis_autopipe
from digaas import storage

# Set the given fields of a request's hash only if the hash exists, in one
# step, so a result never recreates a request that was deleted, and keep
# the set of ACCEPTED ids and the request's JSON text in step.
#
# The text keeps what precedes model.RESULT_JSON_MARKER and gets the
# request's result_json() after it. A text without the marker is deleted,
# so that get_json() builds the text from the hash.
#
# KEYS: the hash, the set and the text's key. ARGV: the status, the id, the
# marker, result_json(), then field and value pairs.
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return -1
end
local text = redis.call('GET', KEYS[3])
if text then
    local marker_at = string.find(text, ARGV[3], 1, true)
    if marker_at then
        redis.call('SET', KEYS[3], string.sub(text, 1, marker_at - 1) .. ARGV[4])
    else
        redis.call('DEL', KEYS[3])
    end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
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

# '"name": ' of each field, in the order of PollRequest.to_dict(), to build a
# request's JSON text from its hash without decoding the values. The
# separators are json.dumps()'s, as in the text the sqlite storage returns.
_JSON_NAMES = tuple(b'"%s": ' % name.encode() for name in model.FIELD_NAMES)

# The JSON text of each field's default, for hashes written before the field
# existed. A field without a default is in every hash.
_JSON_DEFAULTS = tuple(
    b"null" if field.default is dataclasses.MISSING else json.dumps(field.default).encode()
    for field in dataclasses.fields(model.PollRequest))


class RedisStorage(storage.Storage):
    """Each request is a hash under <prefix>:request:<id>.

    Each hash field holds the JSON text of one value. JSON keeps the type of
    every value and writes floats with Python's repr, so each float reads back
    as exactly the same float. A sorted set <prefix>:requests:by_start_time
    indexes the ids by start_time.

    The string <prefix>:json:<id> contains the request's to_json() text, which
    GET /requests/{id} sends: one GET of a string instead of an HMGET of
    every field. It is a key of its own because a hash with a value that
    long would leave Redis's compact encoding.
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

        # The requests and results of the API and the polls go through one
        # shared connection, and the rest through redis-py's client.
        pool = self._redis.connection_pool
        self._pipeline = redis_autopipe.AutoPipeline(
            pool.connection_class(**pool.connection_kwargs))

    def _request_key(self, request_id):
        return f"{self._key_prefix}:request:{request_id}"

    def _json_key(self, request_id):
        return f"{self._key_prefix}:json:{request_id}"

    def _start_time_key(self):
        return f"{self._key_prefix}:requests:by_start_time"

    def _accepted_key(self):
        return f"{self._key_prefix}:requests:accepted"

    def check(self):
        self._run(self._redis.ping, "check")

    def create(self, request):
        self.create_many([request])

    def create_many(self, requests, json_texts=None):
        if json_texts is None:
            json_texts = [request.to_json() for request in requests]
        commands = [("MULTI",)]
        for request, text in zip(requests, json_texts):
            fields = []
            for name in model.FIELD_NAMES:
                fields += (name, _json_text(getattr(request, name)))
            commands.append(("HSET", self._request_key(request.id), *fields))
            commands.append(("SET", self._json_key(request.id), text))
            commands.append(("ZADD", self._start_time_key(), repr(request.start_time), request.id))
            if request.status == model.ACCEPTED:
                commands.append(("SADD", self._accepted_key(), request.id))
        commands.append(("EXEC",))

        replies = self._execute(commands, "store request")
        # EXEC returns the transaction's replies, or an error when Redis
        # rejected a command while queueing it and so ran none of them.
        executed = replies[-1]
        if not isinstance(executed, list):
            raise storage.StorageError(
                f"redis {self.url}: store request failed: the transaction was not run: {executed}")
        _raise_first_error(executed, self.url, "store request")

    def get(self, request_id):
        text = self.get_json(request_id)
        return None if text is None else model.PollRequest.from_dict(json.loads(text))

    def get_json(self, request_id):
        # GET /requests/{id} sends one command per HTTP request, so it
        # gathers the GETs of concurrent requests into one batch.
        [text] = self._execute([("GET", self._json_key(request_id))], "read request", gather=True)
        _raise_first_error([text], self.url, "read request")
        if text is not None:
            return text

        # No text: no such request, or a hash that an older digaas wrote.
        [values] = self._execute([("HMGET", self._request_key(request_id), *model.FIELD_NAMES)],
                                 "read request")
        _raise_first_error([values], self.url, "read request")
        if all(value is None for value in values):
            return None

        # Every stored value is a JSON text, so the hash joins into the
        # request's JSON object with no decoding and encoding.
        members = [name + (default if value is None else value)
                   for name, value, default in zip(_JSON_NAMES, values, _JSON_DEFAULTS)]
        return b"{" + b", ".join(members) + b"}"

    def update_results(self, requests):
        commands = []
        for request in requests:
            keys, arguments = self._result_arguments(request)
            commands.append(("EVALSHA", self._update_if_exists.sha, len(keys), *keys, *arguments))

        replies = self._execute(commands, "store results")
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            # Redis lost its script cache (a restart or SCRIPT FLUSH). The
            # script sets the same fields again, so running all of it again
            # is safe for the requests it already wrote.
            self._run(lambda: self._redis.script_load(_UPDATE_IF_EXISTS), "load script")
            replies = self._execute(commands, "store results")
        _raise_first_error(replies, self.url, "store results")
        return {request.id for request, reply in zip(requests, replies) if reply == -1}

    def _result_arguments(self, request):
        arguments = [request.status, request.id, model.RESULT_JSON_MARKER, request.result_json()]
        for name in model.RESULT_FIELDS:
            arguments += [name, _json_text(getattr(request, name))]
        keys = [self._request_key(request.id), self._accepted_key(), self._json_key(request.id)]
        return keys, arguments

    def update_result(self, request):
        if self.update_results([request]):
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
        self._pipeline.close()
        self._redis.close()

    def _execute(self, commands, description, gather=False):
        return self._run(lambda: self._pipeline.execute(commands, gather), description)

    def _run(self, operation, description):
        try:
            return operation()
        except redis.RedisError as error:
            raise storage.StorageError(
                f"redis {self.url}: {description} failed: {error}") from error


def _json_text(value):
    """Return the JSON text of a field value, as json.dumps does but faster for scalars."""
    kind = type(value)
    if kind is str:
        return json.encoder.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)


def _raise_first_error(replies, url, description):
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise storage.StorageError(f"redis {url}: {description} failed: {reply}")


def redact_password(url):
    """Return the URL with its password, if any, replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
