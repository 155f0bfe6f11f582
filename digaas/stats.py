"""Summaries of poll requests and DNS query latencies, as JSON-ready dicts.

Propagation times (the duration of COMPLETED requests) are exact values, so
their percentiles interpolate between them. Query latencies exist only as
latency.Histogram bin counts and exact min and max, so their percentiles
are bin middles, clamped to that range.
"""

import dataclasses
import logging
import math

import numpy as np

from digaas import latency, model

LOG = logging.getLogger(__name__)

PERCENTILES = (50, 75, 90, 95, 99)

# Key of each percentile in duration_summary. The 50th percentile is the median.
PERCENTILE_KEYS = tuple("median" if p == 50 else f"p{p}" for p in PERCENTILES)

DURATION_KEYS = ("count", "min", "mean") + PERCENTILE_KEYS + ("max",)

# Percentiles of latency_summary, as fractions for latency.percentile_seconds.
LATENCY_FRACTIONS = {"median": 0.5, "p90": 0.9, "p99": 0.99}


@dataclasses.dataclass(frozen=True)
class Columns:
    """Poll requests as parallel numpy arrays, one element per request.

    start_time is in unix seconds and duration in seconds, NaN where the
    request has no duration. status, condition and nameserver are object
    arrays of str.
    """

    start_time: np.ndarray
    duration: np.ndarray
    status: np.ndarray
    condition: np.ndarray
    nameserver: np.ndarray

    # The order of the fields in each row that from_rows reads.
    ROW_FIELDS = ("start_time", "duration", "status", "condition", "nameserver")

    def __len__(self):
        return len(self.start_time)

    @classmethod
    def empty(cls):
        return cls.from_rows(())

    @classmethod
    def from_rows(cls, rows):
        """Build Columns from tuples of (start_time, duration, status, condition, nameserver).

        rows may be any iterable, such as Storage.iter_columns(query,
        Columns.ROW_FIELDS). A duration of None becomes NaN.
        """
        rows = list(rows)

        # One list comprehension per column took about an eighth of the time
        # of zip(*rows), which builds a huge argument tuple, when measured on
        # a million rows.
        start_time = np.array([row[0] for row in rows], dtype=np.float64)

        # numpy turns None into NaN when it converts to float64.
        duration = np.array([row[1] for row in rows], dtype=np.float64)

        status = np.array([row[2] for row in rows], dtype=object)
        condition = np.array([row[3] for row in rows], dtype=object)
        nameserver = np.array([row[4] for row in rows], dtype=object)

        return cls(start_time, duration, status, condition, nameserver)

    def select(self, mask):
        """Return the requests where a boolean array is true."""
        return Columns(self.start_time[mask], self.duration[mask], self.status[mask],
                       self.condition[mask], self.nameserver[mask])


def duration_summary(durations_seconds):
    """Return the count, min, mean, percentiles and max of durations in seconds.

    NaN values are skipped and not counted. With no values left, count is 0
    and every other value is None.

    The percentiles are those of numpy.percentile with method="linear"
    (Hyndman and Fan type 7): for sorted x[0..n-1], the p-th percentile is
    x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])
    with h = (n - 1) * p / 100.
    """
    values = np.asarray(durations_seconds, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]

    if values.size == 0:
        summary = dict.fromkeys(DURATION_KEYS)
        summary["count"] = 0
        return summary

    percentiles = np.percentile(values, PERCENTILES, method="linear")

    summary = {
        "count": int(values.size),
        "min": float(values.min()),
        "mean": float(values.mean()),
    }
    for key, value in zip(PERCENTILE_KEYS, percentiles):
        summary[key] = float(value)
    summary["max"] = float(values.max())
    return summary


def _group_summary(columns):
    completed = columns.status == model.COMPLETED
    return {
        "total": len(columns),
        "completed": int(np.count_nonzero(completed)),
        "error": int(np.count_nonzero(columns.status == model.ERROR)),
        "accepted": int(np.count_nonzero(columns.status == model.ACCEPTED)),
        "duration": duration_summary(columns.duration[completed]),
    }


def _json_time(unix_seconds):
    """Return a window bound as a float, or None when it is open (infinite or None)."""
    if unix_seconds is None or not math.isfinite(unix_seconds):
        return None
    return float(unix_seconds)


def summarize(rows, window_start, window_end):
    """Count the requests in Columns by status and summarize their propagation times.

    rows should hold the requests whose start_time lies in the window.
    summarize does not filter them, and only copies the window bounds (unix
    seconds, None when open) into the result. Each group has the counts
    total, completed, error and accepted, over every request in it, and a
    duration_summary over its COMPLETED requests. by_condition and
    by_nameserver hold only the values present in rows, with sorted keys.
    """
    result = {
        "window": {"start": _json_time(window_start), "end": _json_time(window_end)},
        "overall": _group_summary(rows),
    }

    for field in ("condition", "nameserver"):
        values = getattr(rows, field)

        # A few distinct values and one comparison pass each is faster than
        # np.unique, which sorts the whole object array.
        groups = {}
        for value in sorted(set(values.tolist())):
            groups[value] = _group_summary(rows.select(values == value))
        result[f"by_{field}"] = groups

    LOG.debug("summarized %d requests in %d conditions and %d nameservers",
              len(rows), len(result["by_condition"]), len(result["by_nameserver"]))
    return result


def _has_exact_range(histogram):
    """Return whether a Histogram's min_seconds and max_seconds bound its round-trip times.

    A Histogram built from bin counts alone keeps the defaults inf and 0.
    """
    return histogram.answered > 0 and histogram.min_seconds <= histogram.max_seconds


def histogram_percentile_seconds(histogram, fraction):
    """Return a latency percentile of a Histogram, clamped to its exact min and max.

    The value is latency.percentile_seconds (nearest rank, bin middle). A
    bin middle can lie outside the observed range, especially in the first
    and last bins, which are open-ended. Clamping only moves it closer to
    the true value, which lies in that range. Returns None when no query
    was answered.
    """
    value = latency.percentile_seconds(histogram.counts, fraction)
    if value is None or not _has_exact_range(histogram):
        return value
    return min(max(value, histogram.min_seconds), histogram.max_seconds)


def merge_histograms(histograms, key):
    """Merge latency.Histograms that share key(histogram) into new ones.

    Returns a dict from key to Histogram, sorted by key. The inputs are not
    changed. Each merged Histogram has the nameserver and bucket_start of
    the first input of its key.
    """
    merged = {}
    for histogram in histograms:
        group = key(histogram)
        total = merged.get(group)
        if total is None:
            total = merged[group] = latency.Histogram(histogram.nameserver,
                                                      histogram.bucket_start)
        total.merge(histogram)
    return dict(sorted(merged.items()))


def latency_summary(histograms):
    """Merge latency.Histograms over buckets and summarize each nameserver.

    Returns {nameserver: {"count", "timeouts", "min", "median", "p90",
    "p99", "max"}}. count is answered queries plus timeouts. The times are
    in seconds and None when no query was answered. min and max are exact,
    and None too when the histograms carry only bin counts. The percentiles
    are nearest-rank bin middles, within about 4.5 % of the true value (see
    histogram_percentile_seconds).
    """
    summary = {}
    for nameserver, histogram in merge_histograms(histograms, _nameserver_of).items():
        exact = _has_exact_range(histogram)
        values = {
            "count": histogram.answered + histogram.timeouts,
            "timeouts": histogram.timeouts,
            "min": float(histogram.min_seconds) if exact else None,
        }
        for key, fraction in LATENCY_FRACTIONS.items():
            values[key] = histogram_percentile_seconds(histogram, fraction)
        values["max"] = float(histogram.max_seconds) if exact else None
        summary[nameserver] = values
    return summary


def _nameserver_of(histogram):
    return histogram.nameserver
