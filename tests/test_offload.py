"""Analysis jobs: polls keep their schedule during a large plot, and jobs read only what they need."""

import sqlite3
import time
import uuid

import requests

from digaas import model
from digaas import offload
from digaas import storage_sqlite
from digaas.localservice import LocalService
from fakens import FakeNameserver

STORED_REQUESTS = 300000
FREQUENCY_SECONDS = 0.05


def fill_sqlite(path, count):
    """Write count COMPLETED requests straight into the service's sqlite file."""
    columns = ", ".join(model.FIELD_NAMES)
    placeholders = ", ".join("?" for _ in model.FIELD_NAMES)
    rows = []
    for index in range(count):
        request = model.PollRequest(
            id=str(uuid.UUID(int=index)), nameserver=f"192.0.2.{index % 3 + 1}",
            zone_name=f"z{index}.test.", start_time=1000 + index * 0.01, timeout=30,
            frequency=1, condition=model.SERIAL_NOT_LOWER, serial=1, accepted_at=1000,
            status=model.COMPLETED, duration=(index % 997) / 100)
        values = request.to_dict()
        rows.append([values[name] for name in model.FIELD_NAMES])

    with sqlite3.connect(path) as connection:
        connection.executemany(f"INSERT INTO requests ({columns}) VALUES ({placeholders})", rows)


def test_polls_continue_during_plot(tmp_path):
    settings = {"MIN_FREQUENCY_SECONDS": FREQUENCY_SECONDS, "DNS_QUERY_TIMEOUT_SECONDS": 0.3}
    received_at = []

    with LocalService(tmp_path, settings=settings) as service, FakeNameserver() as fake:
        fill_sqlite(service.sqlite_path, STORED_REQUESTS)

        def handler(query, protocol):
            received_at.append(time.monotonic())
            return fake.handle(query, protocol)
        fake.handler = handler

        # Never met: the fake nameserver serves serial 1.
        body = {"nameserver": fake.host, "port": fake.port, "zone_name": "busy.test.",
                "serial": 5, "start_time": time.time(), "timeout": 30,
                "frequency": FREQUENCY_SECONDS, "condition": "serial_not_lower"}
        assert service.post(body).status_code == 202
        time.sleep(0.5)

        render_started = time.monotonic()
        image = requests.get(f"{service.url}/plots/propagation_by_condition.png",
                             params={"start": 0, "end": 10**6}, timeout=120)
        render_ended = time.monotonic()

    render_seconds = render_ended - render_started
    during = [moment for moment in received_at if render_started <= moment <= render_ended]
    scheduled = render_seconds / FREQUENCY_SECONDS

    assert image.status_code == 200
    # The render must last long enough for the comparison to mean something.
    assert render_seconds > 10 * FREQUENCY_SECONDS
    # A stalled loop would send next to nothing while the plot renders.
    assert len(during) >= scheduled / 2


class CountingReads(storage_sqlite.SqliteStorage):
    """A real sqlite storage that counts the request rows it reads."""

    rows_read = 0

    def iter_columns(self, query, columns):
        for row in super().iter_columns(query, columns):
            self.rows_read += 1
            yield row


def test_latency_plot_reads_no_request(tmp_path):
    path = str(tmp_path / "digaas.sqlite3")
    backend = CountingReads(path, busy_timeout_seconds=5)
    fill_sqlite(path, 1000)
    job = {"kind": "plot", "start": 0, "end": 10**6}

    latency_png = offload.run_job(dict(job, plot="latency"), backend)
    reads_for_latency = backend.rows_read
    offload.run_job(dict(job, plot="propagation_cdf"), backend)

    assert latency_png.startswith(b"\x89PNG")
    assert reads_for_latency == 0
    assert backend.rows_read == 1000
    backend.close()
