"""Summaries, plots, raw export and `digaas report` through the real service."""

import io
import json
import subprocess
import sys
import time

import numpy as np
import pandas
import pytest
import requests

from digaas import model
from digaas import plots
from digaas.localservice import LocalService, SOURCE_ROOT

SETTINGS = {"MIN_FREQUENCY_SECONDS": 0.05, "DNS_QUERY_TIMEOUT_SECONDS": 0.3,
            "LATENCY_FLUSH_SECONDS": 0.2}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def service(request, tmp_path_factory):
    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        import redis
        redis.Redis.from_url(redis_url).flushdb()

    with LocalService(tmp_path_factory.mktemp(f"analysis-{request.param}"),
                      storage=request.param, redis_url=redis_url, settings=SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def test_run(service, bind, tmp_path_factory):
    """Post eight requests on two nameservers and wait for their results.

    Six complete (zones already at their serial), two end ERROR (zones
    never created). start_time values are spread over [1000, 1080).
    """
    window = {"start": 1000, "end": 1080}
    ids = []
    for index in range(8):
        zone = f"an{index}{service.storage}.test."
        if index < 6:
            bind.add_zone(zone, serial=3)
        body = {"nameserver": "127.0.0.1" if index % 2 else "::1", "port": bind.port,
                "zone_name": zone, "serial": 3, "start_time": 1000 + index * 10,
                "timeout": 0.4, "frequency": 0.1, "condition": "serial_not_lower"}
        ids.append(service.post(body).json()["id"])

    records = [service.wait_until_done(request_id, timeout_seconds=10) for request_id in ids]
    # One more outside the window, which no selection below may include.
    outside = dict(body, start_time=5000, zone_name="an0" + service.storage + ".test.")
    service.wait_until_done(service.post(outside).json()["id"], timeout_seconds=10)
    time.sleep(0.5)   # let the latency flusher write
    return window, records


def get(service, path, **params):
    return requests.get(service.url + path, params=params, timeout=60)


def test_csv_loads_in_pandas(service, test_run):
    window, records = test_run

    frame = pandas.read_csv(f"{service.url}/requests?format=csv&start=1000&end=1080")

    assert list(frame.columns) == list(model.FIELD_NAMES)
    assert list(frame["id"]) == [record["id"] for record in records]
    assert list(frame["duration"].isna()) == [record["duration"] is None for record in records]
    completed = frame[frame["status"] == "COMPLETED"]
    assert list(completed["duration"]) == [record["duration"] for record in records
                                           if record["status"] == "COMPLETED"]


def test_json_loads_in_pandas(service, test_run):
    window, records = test_run

    frame = pandas.read_json(io.StringIO(get(service, "/requests", **window).text))

    assert len(frame) == 8
    assert set(frame["status"]) == {"COMPLETED", "ERROR"}


def test_json_equals_stored_records(service, test_run):
    window, records = test_run

    listed = get(service, "/requests", **window).json()

    assert listed == [service.get(record["id"]).json() for record in records]


def test_filters_and_paging(service, test_run):
    window, records = test_run

    errors = get(service, "/requests", status="ERROR", **window).json()
    on_ipv4 = get(service, "/requests", nameserver="127.0.0.1", **window).json()
    pages = [get(service, "/requests", limit=3, offset=offset, **window)
             for offset in (0, 3, 6)]

    assert [row["id"] for row in errors] == [record["id"] for record in records[6:]]
    assert {row["nameserver"] for row in on_ipv4} == {"127.0.0.1"}
    assert len(on_ipv4) == 4
    assert [row["id"] for page in pages for row in page.json()] == [r["id"] for r in records]
    assert "next" in pages[0].headers["Link"]
    assert "Link" not in pages[2].headers


def test_stats_match_numpy(service, test_run):
    window, records = test_run
    durations = np.array([record["duration"] for record in records
                          if record["status"] == "COMPLETED"])

    summary = get(service, "/stats", **window).json()

    overall = summary["overall"]
    assert overall["total"] == 8
    assert overall["completed"] == 6
    assert overall["error"] == 2
    assert overall["accepted"] == 0
    assert overall["duration"]["median"] == pytest.approx(np.percentile(durations, 50))
    assert overall["duration"]["p90"] == pytest.approx(np.percentile(durations, 90))
    assert overall["duration"]["mean"] == pytest.approx(durations.mean())
    assert overall["duration"]["max"] == pytest.approx(durations.max())
    assert summary["by_nameserver"]["::1"]["total"] == 4
    assert summary["by_condition"]["serial_not_lower"]["completed"] == 6


def test_stats_latency_per_nameserver(service, test_run):
    window, records = test_run
    now = time.time()

    summary = get(service, "/stats", start=now - 600, end=now + 60).json()

    latency = summary["latency"]
    assert set(latency) >= {"127.0.0.1", "::1"}
    assert latency["127.0.0.1"]["count"] >= 4
    assert 0 < latency["127.0.0.1"]["min"] <= latency["127.0.0.1"]["median"]
    assert latency["127.0.0.1"]["median"] <= latency["127.0.0.1"]["max"]


def test_stats_filters(service, test_run):
    summary = get(service, "/stats", start=1000, end=1080, nameserver="::1").json()

    assert summary["overall"]["total"] == 4
    assert list(summary["by_nameserver"]) == ["::1"]


def test_stats_empty_window(service, test_run):
    summary = get(service, "/stats", start=1, end=2)

    assert summary.status_code == 200
    assert summary.json()["overall"]["total"] == 0
    assert summary.json()["overall"]["duration"]["median"] is None


@pytest.mark.parametrize("kind", plots.KINDS)
@pytest.mark.parametrize("window", [(1000, 1080), (1, 2)])
def test_plot_is_png(service, test_run, kind, window):
    response = get(service, f"/plots/{kind}.png", start=window[0], end=window[1])

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)


def test_report_writes_folder(service, test_run, tmp_path):
    out = tmp_path / "report"

    finished = subprocess.run(
        [sys.executable, "-m", "digaas.cli", "report", "--url", service.url,
         "--start", "1000", "--end", "1080", "--out", str(out)],
        cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=120)

    assert finished.returncode == 0, finished.stderr
    assert json.loads((out / "summary.json").read_text())["overall"]["total"] == 8
    for kind in plots.KINDS:
        assert (out / f"{kind}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_names_bad_window(service, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "digaas.cli", "report", "--url", service.url,
         "--start", "20", "--end", "10", "--out", str(tmp_path)],
        cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 2
    assert "--end 10.0 is before --start 20.0" in finished.stderr
