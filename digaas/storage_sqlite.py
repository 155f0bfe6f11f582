"""Poll requests in an embedded sqlite database file (the default storage)."""

import sqlite3

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
    error TEXT
);
CREATE INDEX IF NOT EXISTS requests_start_time ON requests (start_time);
CREATE INDEX IF NOT EXISTS requests_status ON requests (status);
"""

class SqliteStorage(storage.Storage):
    """Poll requests in one sqlite file, in WAL mode so readers never wait."""

    def __init__(self, path, *, busy_timeout_seconds):
        self.path = path
        try:
            self._connection = sqlite3.connect(
                path, timeout=busy_timeout_seconds, isolation_level=None,
                check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"cannot open sqlite database {path!r}: {error}") from error

    def create(self, request):
        values = request.to_dict()
        columns = ", ".join(model.FIELD_NAMES)
        placeholders = ", ".join("?" for _ in model.FIELD_NAMES)
        self._execute(f"INSERT INTO requests ({columns}) VALUES ({placeholders})",
                      [values[name] for name in model.FIELD_NAMES], "store request")

    def get(self, request_id):
        columns = ", ".join(model.FIELD_NAMES)
        cursor = self._execute(f"SELECT {columns} FROM requests WHERE id = ?",
                               (request_id,), "read request")
        row = cursor.fetchone()
        if row is None:
            return None
        return model.PollRequest.from_dict(dict(zip(model.FIELD_NAMES, row)))

    def update_result(self, request):
        values = request.to_dict()
        assignments = ", ".join(f"{name} = ?" for name in model.RESULT_FIELDS)
        self._execute(f"UPDATE requests SET {assignments} WHERE id = ?",
                      [values[name] for name in model.RESULT_FIELDS] + [request.id],
                      "store result")

    def close(self):
        self._connection.close()

    def _execute(self, statement, parameters, operation):
        try:
            return self._connection.execute(statement, parameters)
        except sqlite3.Error as error:
            raise storage.StorageError(
                f"sqlite {self.path!r}: {operation} failed: {error}") from error
