import math

import numpy as np
import pytest

from digaas import latency, stats

# 2026-12-04 10:00:00 UTC.
WINDOW_START = 1796378400.0
WINDOW_END = WINDOW_START + 3600.0

PERCENTILE_KEYS = {"median": 50, "p75": 75, "p90": 90, "p95": 95, "p99": 99}

# (start_time, duration, status, condition, nameserver)
SMALL_TABLE = [
    (WINDOW_START + 1, 10.0, "COMPLETED", "zone_exists", "192.0.2.1"),
    (WINDOW_START + 2, 20.0, "COMPLETED", "zone_exists", "192.0.2.2"),
    (WINDOW_START + 3, 30.0, "COMPLETED", "serial_not_lower", "192.0.2.1"),
    (WINDOW_START + 4, None, "ERROR", "zone_exists", "192.0.2.1"),
    (WINDOW_START + 5, None, "ACCEPTED", "serial_not_lower", "192.0.2.2"),
    (WINDOW_START + 6, 50.0, "COMPLETED", "serial_not_lower", "192.0.2.2"),
]


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_duration_summary_matches_numpy(size):
    values = np.random.default_rng(size).lognormal(mean=3.0, sigma=1.0, size=size)

    summary = stats.duration_summary(values.tolist())

    assert summary["count"] == size
    assert summary["min"] == pytest.approx(values.min())
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["max"] == pytest.approx(values.max())
    for key, percentile in PERCENTILE_KEYS.items():
        assert summary[key] == pytest.approx(np.percentile(values, percentile)), key


def test_duration_summary_interpolates_linearly():
    # h = (4 - 1) * 0.9 = 2.7, so p90 = x[2] + 0.7 * (x[3] - x[2]).
    summary = stats.duration_summary([40.0, 10.0, 30.0, 20.0])

    assert summary["p90"] == pytest.approx(30.0 + 0.7 * 10.0)
    assert summary["median"] == pytest.approx(25.0)


def test_duration_summary_empty():
    summary = stats.duration_summary([])

    assert summary["count"] == 0
    for key in stats.DURATION_KEYS[1:]:
        assert summary[key] is None, key


def test_duration_summary_skips_nan():
    summary = stats.duration_summary([1.0, math.nan, 3.0])

    assert summary["count"] == 2
    assert summary["mean"] == 2.0


def test_duration_summary_returns_python_floats():
    summary = stats.duration_summary(np.array([1.0, 2.0]))

    assert type(summary["count"]) is int
    assert type(summary["median"]) is float


def test_from_rows_builds_arrays():
    columns = stats.Columns.from_rows(iter(SMALL_TABLE))

    assert len(columns) == 6
    assert columns.start_time.dtype == np.float64
    assert columns.duration[0] == 10.0
    assert math.isnan(columns.duration[3])
    assert columns.status.tolist() == [row[2] for row in SMALL_TABLE]
    assert columns.condition.shape == (6,)
    assert columns.nameserver[5] == "192.0.2.2"


def test_from_rows_empty():
    columns = stats.Columns.from_rows([])

    assert len(columns) == 0
    assert columns.duration.dtype == np.float64
    assert columns.status.shape == (0,)


def test_summarize_overall_counts():
    summary = stats.summarize(stats.Columns.from_rows(SMALL_TABLE), WINDOW_START, WINDOW_END)
    overall = summary["overall"]

    assert summary["window"] == {"start": WINDOW_START, "end": WINDOW_END}
    assert overall["total"] == 6
    assert overall["completed"] == 4
    assert overall["error"] == 1
    assert overall["accepted"] == 1
    assert overall["duration"]["count"] == 4
    assert overall["duration"]["min"] == 10.0
    assert overall["duration"]["mean"] == 27.5
    assert overall["duration"]["median"] == 25.0
    assert overall["duration"]["max"] == 50.0


def test_summarize_groups_by_condition():
    summary = stats.summarize(stats.Columns.from_rows(SMALL_TABLE), WINDOW_START, WINDOW_END)
    by_condition = summary["by_condition"]

    assert list(by_condition) == ["serial_not_lower", "zone_exists"]

    zone_exists = by_condition["zone_exists"]
    assert zone_exists["total"] == 3
    assert zone_exists["completed"] == 2
    assert zone_exists["error"] == 1
    assert zone_exists["accepted"] == 0
    assert zone_exists["duration"]["median"] == 15.0

    serial = by_condition["serial_not_lower"]
    assert serial["total"] == 3
    assert serial["completed"] == 2
    assert serial["accepted"] == 1
    assert serial["duration"]["min"] == 30.0
    assert serial["duration"]["max"] == 50.0


def test_summarize_groups_by_nameserver():
    summary = stats.summarize(stats.Columns.from_rows(SMALL_TABLE), WINDOW_START, WINDOW_END)
    by_nameserver = summary["by_nameserver"]

    assert list(by_nameserver) == ["192.0.2.1", "192.0.2.2"]

    first = by_nameserver["192.0.2.1"]
    assert first["total"] == 3
    assert first["completed"] == 2
    assert first["error"] == 1
    assert first["duration"]["mean"] == 20.0

    second = by_nameserver["192.0.2.2"]
    assert second["total"] == 3
    assert second["completed"] == 2
    assert second["accepted"] == 1
    assert second["duration"]["mean"] == 35.0


def test_summarize_empty_rows():
    summary = stats.summarize(stats.Columns.empty(), WINDOW_START, WINDOW_END)

    assert summary["overall"]["total"] == 0
    assert summary["overall"]["duration"]["median"] is None
    assert summary["by_condition"] == {}
    assert summary["by_nameserver"] == {}


def test_summarize_open_window_is_none():
    summary = stats.summarize(stats.Columns.empty(), -math.inf, math.inf)

    assert summary["window"] == {"start": None, "end": None}


def histogram_of(nameserver, bucket_start, rtts_seconds, timeouts=0):
    histogram = latency.Histogram(nameserver, bucket_start)
    for rtt_seconds in rtts_seconds:
        histogram.add(rtt_seconds)
    histogram.timeouts = timeouts
    return histogram


def test_latency_summary_merges_buckets():
    histograms = [
        histogram_of("192.0.2.1", 60, [0.010, 0.020], timeouts=1),
        histogram_of("192.0.2.1", 120, [0.005, 0.040], timeouts=2),
        histogram_of("192.0.2.2", 60, [0.100]),
    ]

    summary = stats.latency_summary(histograms)
    first = summary["192.0.2.1"]

    assert list(summary) == ["192.0.2.1", "192.0.2.2"]
    assert first["count"] == 7
    assert first["timeouts"] == 3
    assert first["min"] == 0.005
    assert first["max"] == 0.040
    assert summary["192.0.2.2"]["count"] == 1


def test_latency_summary_leaves_inputs_alone():
    histogram = histogram_of("192.0.2.1", 60, [0.010], timeouts=1)

    stats.latency_summary([histogram, histogram_of("192.0.2.1", 120, [0.020])])

    assert histogram.answered == 1
    assert histogram.timeouts == 1
    assert histogram.max_seconds == 0.010


def test_latency_summary_only_timeouts():
    summary = stats.latency_summary([histogram_of("192.0.2.1", 60, [], timeouts=4)])
    values = summary["192.0.2.1"]

    assert values["count"] == 4
    assert values["timeouts"] == 4
    for key in ("min", "median", "p90", "p99", "max"):
        assert values[key] is None, key


def test_latency_summary_single_answer_is_exact():
    # The bin middle lies outside [min, max], so it is clamped to the time itself.
    summary = stats.latency_summary([histogram_of("192.0.2.1", 60, [0.0123])])

    assert summary["192.0.2.1"]["median"] == 0.0123
    assert summary["192.0.2.1"]["p99"] == 0.0123


def test_latency_summary_counts_only():
    # A histogram made from bin counts alone keeps min_seconds inf and max_seconds 0.
    histogram = latency.Histogram("192.0.2.1", 60, counts={latency.bin_of(0.01): 3})

    values = stats.latency_summary([histogram])["192.0.2.1"]

    assert values["count"] == 3
    assert values["median"] == latency.bin_middle_seconds(latency.bin_of(0.01))
    assert values["min"] is None
    assert values["max"] is None


def test_latency_summary_empty():
    assert stats.latency_summary([]) == {}


def test_latency_percentiles_within_bin_error():
    generator = np.random.default_rng(7)
    rtts = generator.lognormal(mean=math.log(0.02), sigma=0.8, size=5000)
    histograms = [histogram_of("192.0.2.1", 60 * index, part.tolist())
                  for index, part in enumerate(np.array_split(rtts, 5))]

    summary = stats.latency_summary(histograms)["192.0.2.1"]

    # latency.percentile_seconds ranks by nearest rank, numpy's "inverted_cdf".
    for key, percentile in {"median": 50, "p90": 90, "p99": 99}.items():
        expected = np.percentile(rtts, percentile, method="inverted_cdf")
        assert summary[key] == pytest.approx(expected, rel=0.045), key
    assert summary["min"] == rtts.min()
    assert summary["max"] == rtts.max()
