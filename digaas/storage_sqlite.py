"""Poll requests in an embedded sqlite database file (the default storage)."""

import json
import math
import sqlite3
import time

from digaas import latency
from digaas import model
from digaas import storage

# Columns without a declared type keep each value's own type, so an integer
# start_time comes back as an integer and a float as the same float.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    nameserver TEXT NOT NULL,
    zone_name TEXT NOT NULL,
    start_time NOT NULL,
    timeout NOT NULL,
    frequency NOT NULL,
    condition TEXT NOT NULL,
    port INTEGER NOT NULL,
    serial INTEGER,
    record_name TEXT,
    rdatatype TEXT,
    rdata TEXT,
    protocol TEXT NOT NULL,
    status TEXT NOT NULL,
    accepted_at,
    duration,
    completed_at,
    last_miss_at,
    queries INTEGER NOT NULL,
    last_rcode TEXT,
    last_serial INTEGER,
    error TEXT,
    rate_limit_delay_seconds REAL NOT NULL DEFAULT 0.0,
    owner TEXT,
    record_json BLOB
);
CREATE INDEX IF NOT EXISTS requests_start_time ON requests (start_time, id);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status);

CREATE TABLE IF NOT EXISTS latency_buckets (
    nameserver TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    timeouts INTEGER NOT NULL,
    min_seconds REAL,
    max_seconds REAL,
    PRIMARY KEY (bucket_start, nameserver)
);
CREATE TABLE IF NOT EXISTS latency_bins (
    nameserver TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    bin INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    PRIMARY KEY (bucket_start, nameserver, bin)
);
"""

# Columns added after the first release, with their declarations, so that a
# database file from an older digaas gains them when it is opened.
_ADDED_COLUMNS = {
    "rate_limit_delay_seconds": "REAL NOT NULL DEFAULT 0.0",
    "owner": "TEXT",
    "record_json": "BLOB",
}

_SELECT_ONE = f"SELECT {', '.join(model.FIELD_NAMES)} FROM requests WHERE id = ?"

# Each row also keeps the request's to_json() text, which GET /requests/{id}
# sends. Reading it instead of encoding the columns cut a GET's CPU in the
# worker from 128 to 90 us in bench_api.py (BENCHMARKS.md, API), where the
# bare echo app takes 89 us.
_SELECT_JSON = "SELECT record_json FROM requests WHERE id = ?"
_INSERT = (f"INSERT INTO requests ({', '.join(model.FIELD_NAMES)}, record_json)"
           f" VALUES ({', '.join('?' for _ in model.FIELD_NAMES)}, ?)")
# A result keeps the stored text up to model.RESULT_JSON_MARKER and puts the
# request's result_json() after it. Text without the marker becomes NULL,
# and get_json() then encodes the columns. The || operator returns text, so
# CAST makes the result a BLOB again.
#
# Parameters: RESULT_FIELDS, the marker, result_json(), the id.
_MARKER, _RESULT_JSON, _ID = (f"?{len(model.RESULT_FIELDS) + number}" for number in (1, 2, 3))
_UPDATE_RESULT = (
    "UPDATE requests SET "
    + ", ".join(f"{name} = ?{number}" for number, name in enumerate(model.RESULT_FIELDS, 1))
    + f", record_json = CASE WHEN instr(record_json, {_MARKER}) > 0 THEN"
      f" CAST(substr(record_json, 1, instr(record_json, {_MARKER}) - 1) || {_RESULT_JSON} AS BLOB)"
      f" END WHERE id = {_ID}")

# Pause between attempts to set up a file that another process is setting up.
SETUP_RETRY_SECONDS = 0.05

# Rows fetched from sqlite at a time while streaming a selection.
FETCH_ROWS = 1000

class SqliteStorage(storage.Storage):
    """Poll requests in one sqlite file, in WAL mode so that readers do not block the writer."""

    def __init__(self, path, *, busy_timeout_seconds):
        self.path = path
        try:
            self._connection = sqlite3.connect(
                path, timeout=busy_timeout_seconds, isolation_level=None,
                check_same_thread=False)
            self._set_up(time.monotonic() + busy_timeout_seconds)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"cannot open sqlite database {path!r}: {error}") from error

    def _set_up(self, deadline):
        # Workers that start together on a new file all switch it to WAL
        # and create the tables. A connection that must upgrade its lock
        # while another one waits to do the same gets "database is locked"
        # at once, without the busy timeout, so the setup is retried.
        while True:
            try:
                self._connection.execute("PRAGMA journal_mode=WAL")
                self._connection.execute("PRAGMA synchronous=NORMAL")
                self._connection.executescript(_SCHEMA)
                self._add_missing_columns()
                return
            except sqlite3.OperationalError as error:
                if "database is locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(SETUP_RETRY_SECONDS)

    def _add_missing_columns(self):
        present = {row[1] for row in self._connection.execute("PRAGMA table_info(requests)")}
        for column, declaration in _ADDED_COLUMNS.items():
            if column not in present:
                self._connection.execute(f"ALTER TABLE requests ADD COLUMN {column} {declaration}")

    def check(self):
        self._execute("SELECT COUNT(*) FROM requests WHERE id = ''", (), "check")

    def create(self, request):
        self.create_many([request])

    def create_many(self, requests, json_texts=None):
        if json_texts is None:
            json_texts = [request.to_json() for request in requests]
        rows = [[getattr(request, name) for name in model.FIELD_NAMES] + [text]
                for request, text in zip(requests, json_texts)]
        try:
            with self._connection:
                self._connection.execute("BEGIN")
                self._connection.executemany(_INSERT, rows)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: store request failed: {error}") from error

    def get(self, request_id):
        values = self._get_values(request_id)
        return None if values is None else model.PollRequest.from_dict(values)

    def get_json(self, request_id):
        row = self._execute(_SELECT_JSON, (request_id,), "read request").fetchone()
        if row is None:
            return None
        if row[0] is not None:
            return row[0]

        # A row that an older digaas wrote has no text. The columns keep
        # each value's type, so their values encode as to_json() does.
        return json.dumps(self._get_values(request_id)).encode()

    def _get_values(self, request_id):
        cursor = self._execute(_SELECT_ONE, (request_id,), "read request")
        row = cursor.fetchone()
        return None if row is None else dict(zip(model.FIELD_NAMES, row))

    def update_result(self, request):
        cursor = self._execute(_UPDATE_RESULT, _result_row(request), "store result")
        if cursor.rowcount == 0:
            raise storage.RequestNotFound(f"sqlite {self.path!r}: request {request.id} not found")

    def iter_accepted(self):
        columns = ", ".join(model.FIELD_NAMES)
        cursor = self._execute(f"SELECT {columns} FROM requests WHERE status = ?",
                               (model.ACCEPTED,), "read accepted requests")
        for row in cursor.fetchall():
            yield model.PollRequest.from_dict(dict(zip(model.FIELD_NAMES, row)))

    def iter_requests(self, query):
        for row in self.iter_columns(query, model.FIELD_NAMES):
            yield model.PollRequest.from_dict(dict(zip(model.FIELD_NAMES, row)))

    def iter_columns(self, query, columns):
        for column in columns:
            if column not in model.FIELD_NAMES:
                raise ValueError(f"unknown request field {column!r}")

        conditions = []
        parameters = []
        if query.start != -math.inf:
            conditions.append("start_time >= ?")
            parameters.append(query.start)
        if query.end != math.inf:
            conditions.append("start_time < ?")
            parameters.append(query.end)
        for field in ("status", "nameserver", "condition"):
            value = getattr(query, field)
            if value is not None:
                conditions.append(f"{field} = ?")
                parameters.append(value)

        statement = f"SELECT {', '.join(columns)} FROM requests"
        if conditions:
            statement += " WHERE " + " AND ".join(conditions)
        statement += " ORDER BY start_time, id LIMIT ? OFFSET ?"
        parameters += [-1 if query.limit is None else query.limit, query.offset]

        # A cursor of its own, so that writes by polls on the shared
        # connection can go on between the fetches.
        cursor = self._execute(statement, parameters, "read requests")
        while True:
            rows = self._fetch(cursor)
            if not rows:
                return
            yield from rows

    def add_latency(self, histograms):
        buckets = []
        bins = []
        for histogram in histograms:
            min_seconds = None if histogram.min_seconds == math.inf else histogram.min_seconds
            max_seconds = None if histogram.answered == 0 else histogram.max_seconds
            buckets.append((histogram.nameserver, histogram.bucket_start, histogram.timeouts,
                            min_seconds, max_seconds))
            for index, count in histogram.counts.items():
                bins.append((histogram.nameserver, histogram.bucket_start, index, count))

        try:
            with self._connection:
                self._connection.execute("BEGIN")
                self._connection.executemany(
                    "INSERT INTO latency_buckets VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (bucket_start, nameserver) DO UPDATE SET"
                    " timeouts = timeouts + excluded.timeouts,"
                    " min_seconds = min(coalesce(min_seconds, excluded.min_seconds),"
                    "                   coalesce(excluded.min_seconds, min_seconds)),"
                    " max_seconds = max(coalesce(max_seconds, excluded.max_seconds),"
                    "                   coalesce(excluded.max_seconds, max_seconds))",
                    buckets)
                self._connection.executemany(
                    "INSERT INTO latency_bins VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (bucket_start, nameserver, bin) DO UPDATE SET"
                    " queries = queries + excluded.queries",
                    bins)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: store latency failed: {error}") from error

    def iter_latency(self, start, end, nameserver=None):
        statement = ("SELECT nameserver, bucket_start, timeouts, min_seconds, max_seconds"
                     " FROM latency_buckets WHERE bucket_start >= ? AND bucket_start < ?")
        parameters = [_bound(start), _bound(end)]
        if nameserver is not None:
            statement += " AND nameserver = ?"
            parameters.append(nameserver)
        statement += " ORDER BY bucket_start, nameserver"
        buckets = self._execute(statement, parameters, "read latency").fetchall()

        for name, bucket_start, timeouts, min_seconds, max_seconds in buckets:
            histogram = latency.Histogram(
                name, bucket_start, timeouts=timeouts,
                min_seconds=math.inf if min_seconds is None else min_seconds,
                max_seconds=0.0 if max_seconds is None else max_seconds)
            bins = self._execute(
                "SELECT bin, queries FROM latency_bins"
                " WHERE bucket_start = ? AND nameserver = ?",
                (bucket_start, name), "read latency").fetchall()
            histogram.counts = dict(bins)
            yield histogram

    def update_results(self, requests):
        missing = set()
        try:
            with self._connection:
                self._connection.execute("BEGIN")
                for request in requests:
                    cursor = self._connection.execute(_UPDATE_RESULT, _result_row(request))
                    if cursor.rowcount == 0:
                        missing.add(request.id)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: store results failed: {error}") from error
        return missing

    def close(self):
        self._connection.close()

    def _fetch(self, cursor):
        try:
            return cursor.fetchmany(FETCH_ROWS)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: read requests failed: {error}") from error

    def _execute(self, statement, parameters, operation):
        try:
            return self._connection.execute(statement, parameters)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: {operation} failed: {error}") from error


def _result_row(request):
    """Return the parameters of _UPDATE_RESULT for request."""
    return ([getattr(request, name) for name in model.RESULT_FIELDS]
            + [model.RESULT_JSON_MARKER, request.result_json(), request.id])


def _bound(value):
    """Clamp a window edge to a number sqlite can store as a 64-bit integer."""
    return max(-2**62, min(2**62, value))
