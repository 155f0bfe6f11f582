"""Poll a nameserver on a fixed-rate schedule until a request's condition holds.

Each accepted request gets one greenlet, owned by the Poller's group. The
greenlet sends its first query at once, then at accepted_at + k * frequency,
and stops at the first answer that meets the condition (COMPLETED) or at
accepted_at + timeout (ERROR). It writes storage only when the request
leaves ACCEPTED, or when the poll is stopped with the process.
"""

import collections
import dataclasses
import datetime
import logging
import math
import time

import gevent
import gevent.pool

from digaas import conditions
from digaas import digdig
from digaas import latency
from digaas import model
from digaas import ratelimit
from digaas import results
from digaas import storage

LOG = logging.getLogger(__name__)


class Poller:
    """Owner of the polling greenlets of one process."""

    def __init__(self, storage_backend, *, dns_query_timeout_seconds,
                 latency_flush_seconds=5.0, max_queries_per_second_per_nameserver=10000.0,
                 max_pending_results=100000, result_retry_seconds=1.0):
        self._storage = storage_backend
        self._dns_query_timeout_seconds = dns_query_timeout_seconds
        self._latency_flush_seconds = latency_flush_seconds
        self._group = gevent.pool.Group()
        self._in_flight = {}
        self._latency = latency.Recorder()
        self._flusher = None
        self._rate_limiter = ratelimit.QueryRateLimiter(max_queries_per_second_per_nameserver)
        self._results = results.ResultWriter(storage_backend, max_pending=max_pending_results,
                                             retry_seconds=result_retry_seconds)
        self.queries_sent = 0
        # How late queries went out against their planned slot, in seconds.
        self.schedule_lag = latency.Histogram("schedule lag", 0)

    def __len__(self):
        """Return the number of polls running in this process."""
        return len(self._group)

    def start(self, request):
        """Start polling for an ACCEPTED request that is already stored.

        The schedule is anchored to request.accepted_at, so a request that
        is resumed after a restart keeps its original slots and deadline.
        """
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush_latency_forever)
            self._flusher.link_exception(self._log_flusher_crash)

        greenlet = gevent.Greenlet(self._run, request)
        greenlet.link_exception(lambda dead: self._log_crash(request, dead))
        self._in_flight[request.id] = request
        self._group.start(greenlet)
        return greenlet

    def resume(self, owner, *, adopt=lambda other_owner: False):
        """Take over the ACCEPTED requests of owner (and of owners adopt() accepts).

        Those whose deadline has passed become ERROR; the others are polled
        again on their original schedule. Returns (resumed, expired) counts.
        """
        resumed = expired = 0
        now = time.time()
        for request in self._storage.iter_accepted():
            if request.owner != owner and not adopt(request.owner):
                continue

            previous_owner, request.owner = request.owner, owner
            if request.deadline <= now:
                request.status = model.ERROR
                request.error = (f"digaas was not running at the deadline"
                                 f" ({format_time(request.deadline)}), so polling stopped"
                                 f" after {request.queries} queries")
                self._store(request)
                expired += 1
            else:
                LOG.info("request %s: resuming the poll of %s", request.id, previous_owner)
                self._storage.update_result(request)
                self.start(request)
                resumed += 1

        if resumed or expired:
            LOG.info("%s took over %d polls and marked %d past their deadline ERROR",
                     owner, resumed, expired)
        return resumed, expired

    def join(self, timeout_seconds=None):
        """Wait until every running poll has finished; return True if all did."""
        return self._group.join(timeout=timeout_seconds)

    def kill(self, timeout_seconds=None):
        """Stop every poll and the background greenlets, then write what is pending.

        Requests whose poll was stopped stay ACCEPTED, with the queries so
        far written, so that the next start of their owner resumes them.
        """
        self._group.kill(timeout=timeout_seconds)
        if self._flusher is not None:
            self._flusher.kill(timeout=timeout_seconds)
            self._flusher = None
        self._results.stop()

        for request in list(self._in_flight.values()):
            self._store(request)
        self._in_flight.clear()
        self._results.flush()
        self.flush_latency()

    def pending_results(self):
        """Return the number of results waiting for the storage to come back."""
        return len(self._results)

    def metrics(self):
        """Return counters of this process's polls, for GET /metrics.

        schedule_lag_bins holds the cumulative counts of latency.EDGES bins,
        so the difference of two readings is the histogram between them.
        """
        lag = self.schedule_lag
        return {
            "in_flight": len(self._group),
            "queries_sent": self.queries_sent,
            "pending_results": len(self._results),
            "schedule_lag_seconds": {
                "count": lag.answered,
                "median": latency.percentile_seconds(lag.counts, 0.5),
                "p90": latency.percentile_seconds(lag.counts, 0.9),
                "p99": latency.percentile_seconds(lag.counts, 0.99),
                "max": lag.max_seconds if lag.answered else None,
            },
            "schedule_lag_bins": {str(index): count for index, count in sorted(lag.counts.items())},
        }

    def flush_latency(self):
        """Add the round-trip times measured since the last flush to storage."""
        histograms = self._latency.take()
        if not histograms:
            return
        try:
            self._storage.add_latency(histograms)
        except storage.StorageError as error:
            self._latency.put_back(histograms)
            LOG.warning("storing %d latency histograms failed, keeping them for the"
                        " next flush: %s", len(histograms), error)

    def _flush_latency_forever(self):
        while True:
            gevent.sleep(self._latency_flush_seconds)
            self.flush_latency()

    @staticmethod
    def _log_flusher_crash(greenlet):
        LOG.error("latency flusher died; round-trip times are no longer stored",
                  exc_info=greenlet.exc_info)

    def _run(self, request):
        try:
            self._poll(request)
        except Exception as error:
            LOG.exception("request %s: poll failed, marking it ERROR", request.id)
            request.status = model.ERROR
            request.error = f"internal error while polling: {error!r}"
            self._store(request)
        finally:
            if request.status != model.ACCEPTED:
                self._in_flight.pop(request.id, None)

    def _poll(self, request):
        # The schedule runs on the monotonic clock so that a wall-clock step
        # cannot shift it; accepted_at anchors it to when the request arrived.
        origin = time.monotonic() - (time.time() - request.accepted_at)
        deadline = origin + request.timeout
        prepared = digdig.prepare(*conditions.query_for(request))
        tally = Tally()

        LOG.info("request %s: polling %s port %s for %s %s every %s s for %s s",
                 request.id, request.nameserver, request.port, request.zone_name,
                 request.condition, request.frequency, request.timeout)

        slot = 0
        while True:
            planned = origin + slot * request.frequency
            if planned >= deadline:
                break
            gevent.sleep(max(0.0, planned - time.monotonic()))
            self.schedule_lag.add(max(0.0, time.monotonic() - planned))

            wait_seconds = self._rate_limiter.reserve(request.nameserver, time.monotonic())
            if wait_seconds > 0:
                request.rate_limit_delay_seconds += wait_seconds
                gevent.sleep(wait_seconds)

            remaining_seconds = deadline - time.monotonic()
            if remaining_seconds <= 0:
                break

            answer = digdig.send(
                prepared, request.nameserver, request.port,
                min(self._dns_query_timeout_seconds, remaining_seconds),
                protocol=request.protocol)
            verdict = conditions.evaluate(request, answer)
            self._record(request, answer, verdict, tally)

            if verdict.met:
                request.status = model.COMPLETED
                request.completed_at = answer.received_at
                request.duration = answer.received_at - request.start_time
                LOG.info("request %s: COMPLETED after %d queries, duration %.3f s",
                         request.id, request.queries, request.duration)
                self._store(request)
                return

            # Fixed rate: the next slot follows this one, but a query that ran
            # past later slots skips to the latest slot already due.
            late_slot = math.floor((time.monotonic() - origin) / request.frequency)
            slot = max(slot + 1, late_slot)

        # No slot is left before the deadline; the request stays ACCEPTED
        # until the deadline itself, as the client asked.
        gevent.sleep(max(0.0, deadline - time.monotonic()))
        request.status = model.ERROR
        request.error = describe_timeout(request, tally)
        LOG.info("request %s: ERROR, %s", request.id, request.error)
        self._store(request)

    def _record(self, request, answer, verdict, tally):
        request.queries += 1
        self.queries_sent += 1
        tally.ignored_replies += answer.ignored_replies
        if answer.wire is not None or answer.failure == "timeout":
            self._latency.record(request.nameserver, answer.received_at - answer.rtt_seconds,
                                 answer.rtt_seconds, timed_out=answer.wire is None)

        if verdict.malformed:
            answer.failure = "bad response: records do not parse"
        if answer.wire is None or verdict.malformed:
            tally.failures[answer.failure] += 1
            if tally.failures[answer.failure] == 1:
                LOG.warning("request %s: query %d to %s port %s failed: %s"
                            " (later repeats are only counted)",
                            request.id, request.queries, request.nameserver,
                            request.port, answer.failure)
            return

        request.last_rcode = answer.rcode
        tally.rcodes[answer.rcode] += 1
        if not verdict.authoritative:
            tally.not_authoritative += 1
        if verdict.serial is not None:
            request.last_serial = verdict.serial
        if not verdict.met:
            request.last_miss_at = answer.received_at

    def _store(self, request):
        self._results.write(request)

    @staticmethod
    def _log_crash(request, greenlet):
        LOG.error("request %s: polling greenlet died", request.id,
                  exc_info=greenlet.exc_info)


@dataclasses.dataclass(slots=True)
class Tally:
    """Counts of what a poll's queries met on the way, for its error message."""

    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    rcodes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    not_authoritative: int = 0
    ignored_replies: int = 0


def format_time(unix_seconds):
    """Return unix seconds as an ISO 8601 UTC time, for messages."""
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


def describe_timeout(request, tally):
    """Return the error message of a request whose deadline passed."""
    total = request.queries
    server = f"nameserver {request.nameserver} port {request.port}"
    parts = []

    refused = tally.rcodes.pop("REFUSED", 0)
    if refused == total and total:
        parts.append(f"{server} refused {refused} of {total} queries")
    else:
        parts.append(f"{total} queries")
        if refused:
            parts.append(f"{server} refused {refused} of them")

    for rcode, count in sorted(tally.rcodes.items()):
        if rcode != "NOERROR":
            parts.append(f"{count} answered {rcode}")
    if tally.not_authoritative:
        parts.append(f"{tally.not_authoritative} answers without the AA flag")
    for failure, count in tally.failures.most_common():
        parts.append(f"{count} x {failure}")
    if tally.ignored_replies:
        parts.append(f"{tally.ignored_replies} replies ignored"
                     " (unparsable, or another id or question)")
    if request.last_serial is not None:
        parts.append(f"last serial {request.last_serial}")
    elif request.last_rcode is not None and not refused:
        parts.append(f"last rcode {request.last_rcode}")

    return f"timed out after {request.timeout} s: " + ", ".join(parts)
