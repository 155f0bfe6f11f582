"""DNS query round-trip times in bounded form: histograms per nameserver and minute.

A week-long test sends hundreds of millions of queries, so digaas never keeps
a row per query. Each process adds every round-trip time to a histogram of
its (nameserver, bucket) pair, in memory, and writes the counts to storage
now and then, where they add up across processes.

The bins are geometric: bin i contains times in [EDGES[i], EDGES[i+1]) seconds,
each 2**(1/8) (about 9 %) wider than the one before, from 50 microseconds to
about 30 seconds. Bin 0 also holds anything faster, and the last bin anything
slower. A percentile read from the histogram is the geometric middle of its
bin, so it is within about 4.5 % of the true value.
"""

import bisect
import dataclasses
import math

BUCKET_SECONDS = 60
SMALLEST_EDGE_SECONDS = 50e-6
BIN_RATIO = 2 ** (1 / 8)
BIN_COUNT = 154

# EDGES[i] is the lower edge of bin i, in seconds.
EDGES = tuple(SMALLEST_EDGE_SECONDS * BIN_RATIO**index for index in range(BIN_COUNT))


def bin_of(rtt_seconds):
    """Return the index of the bin that contains a round-trip time."""
    return max(0, min(BIN_COUNT - 1, bisect.bisect_right(EDGES, rtt_seconds) - 1))


def bin_middle_seconds(index):
    """Return the geometric middle of a bin, the value a percentile reports."""
    return EDGES[index] * math.sqrt(BIN_RATIO)


def bucket_of(wall_time):
    """Return the start (unix seconds) of the bucket that holds a wall-clock time."""
    return int(wall_time // BUCKET_SECONDS) * BUCKET_SECONDS


@dataclasses.dataclass
class Histogram:
    """Round-trip times of one nameserver in one bucket."""

    nameserver: str
    bucket_start: int
    counts: dict = dataclasses.field(default_factory=dict)   # bin index -> queries
    timeouts: int = 0
    min_seconds: float = math.inf
    max_seconds: float = 0.0

    def add(self, rtt_seconds):
        index = bin_of(rtt_seconds)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.min_seconds = min(self.min_seconds, rtt_seconds)
        self.max_seconds = max(self.max_seconds, rtt_seconds)

    def merge(self, other):
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.timeouts += other.timeouts
        self.min_seconds = min(self.min_seconds, other.min_seconds)
        self.max_seconds = max(self.max_seconds, other.max_seconds)

    @property
    def answered(self):
        return sum(self.counts.values())


class Recorder:
    """The histograms of one process that storage has not received yet."""

    def __init__(self):
        self._pending = {}

    def record(self, nameserver, sent_at, rtt_seconds, timed_out):
        """Add one query: its wall-clock send time and round-trip time."""
        key = (nameserver, bucket_of(sent_at))
        histogram = self._pending.get(key)
        if histogram is None:
            histogram = self._pending[key] = Histogram(nameserver, key[1])

        if timed_out:
            histogram.timeouts += 1
        else:
            histogram.add(rtt_seconds)

    def take(self):
        """Return the pending histograms and start afresh."""
        pending, self._pending = list(self._pending.values()), {}
        return pending

    def put_back(self, histograms):
        """Merge histograms that storage did not take back into the pending ones."""
        for histogram in histograms:
            key = (histogram.nameserver, histogram.bucket_start)
            current = self._pending.get(key)
            if current is None:
                self._pending[key] = histogram
            else:
                current.merge(histogram)


def percentile_seconds(counts, fraction):
    """Return the round-trip time below which `fraction` of the answered queries fall.

    counts maps bin index to queries. Returns None when counts is empty.
    The rank is nearest-rank: the smallest bin whose cumulative count reaches
    ceil(fraction * total).
    """
    total = sum(counts.values())
    if total == 0:
        return None

    rank = max(1, math.ceil(fraction * total))
    cumulative = 0
    for index in sorted(counts):
        cumulative += counts[index]
        if cumulative >= rank:
            return bin_middle_seconds(index)
    raise AssertionError("cumulative count never reached the rank")
