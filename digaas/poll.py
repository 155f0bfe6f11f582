"""Poll a nameserver on a fixed-rate schedule until a request's condition holds.

Each accepted request becomes a Poll: a small state machine driven by
timers of the gevent loop, not a greenlet of its own, so that a process can
keep a hundred thousand requests in flight. A Poll sends its first query at
once, then at accepted_at + k * frequency, and stops at the first answer that
meets the condition (COMPLETED) or at accepted_at + timeout (ERROR). Its
steps run as loop callbacks and never block: UDP queries go through the
shared sockets of transport.py, results go to the ResultWriter's greenlet,
and the rare TCP query (forced, or after a truncated answer) runs in a
greenlet of the Poller's group. A step that raises marks its request ERROR
and is logged with the request id.
"""

import collections
import dataclasses
import datetime
import logging
import math
import time

import gevent
import gevent.pool
from gevent import get_hub

from digaas import conditions
from digaas import digdig
from digaas import latency
from digaas import loopbudget
from digaas import model
from digaas import ratelimit
from digaas import results
from digaas import storage

LOG = logging.getLogger(__name__)


class Poller:
    """Owner of the polls of one process, and of the greenlets they need."""

    def __init__(self, storage_backend, *, dns_query_timeout_seconds,
                 latency_flush_seconds=5.0, max_queries_per_second_per_nameserver=10000.0,
                 max_pending_results=100000, result_retry_seconds=1.0,
                 max_steps_per_loop_pass=None):
        self._storage = storage_backend
        self.dns_query_timeout_seconds = dns_query_timeout_seconds
        self._latency_flush_seconds = latency_flush_seconds
        # Greenlets of TCP queries and the latency flusher.
        self._group = gevent.pool.Group()
        self._polls = {}
        self._latency = latency.Recorder()
        self._flusher = None
        self.rate_limiter = ratelimit.QueryRateLimiter(max_queries_per_second_per_nameserver)
        self._results = results.ResultWriter(storage_backend, max_pending=max_pending_results,
                                             retry_seconds=result_retry_seconds)
        self.queries_sent = 0
        self.step_budget = loopbudget.StepBudget(max_steps_per_loop_pass)
        # How late queries went out against their planned slot, in seconds.
        self.schedule_lag = latency.Histogram("schedule lag", 0)

    def __len__(self):
        """Return the number of polls running in this process."""
        return len(self._polls)

    def start(self, request):
        """Start polling for an ACCEPTED request that is already stored.

        The schedule is anchored to request.accepted_at, so a request that
        is resumed after a restart keeps its original slots and deadline.
        """
        if self._flusher is None:
            self._flusher = self._group.spawn(self._flush_latency_forever)
            self._flusher.link_exception(self._log_flusher_crash)

        poll = Poll(self, request)
        self._polls[request.id] = poll
        LOG.info("request %s: polling %s port %s for %s %s every %s s, %.1f s left",
                 request.id, request.nameserver, request.port, request.zone_name,
                 request.condition, request.frequency, request.deadline - time.time())
        poll.schedule_slot()
        return poll

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
                LOG.info("request %s: ERROR, %s", request.id, request.error)
                self._results.submit(request)
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

    def kill(self, timeout_seconds=None):
        """Stop every poll and greenlet, then write what is pending.

        Requests whose poll was stopped stay ACCEPTED, with the queries so
        far written, so that the next start of their owner resumes them.
        """
        for poll in list(self._polls.values()):
            poll.stop()
            self._results.submit(poll.request)
        self._polls.clear()
        self._group.kill(timeout=timeout_seconds)
        self._flusher = None

        self._results.flush()
        self._results.stop()
        self.flush_latency()

    def pending_results(self):
        """Return the number of results waiting for the storage."""
        return len(self._results)

    def metrics(self):
        """Return counters of this process's polls, for GET /metrics.

        schedule_lag_bins holds the cumulative counts of latency.EDGES bins,
        so the difference of two readings is the histogram between them.
        """
        lag = self.schedule_lag
        return {
            "in_flight": len(self._polls),
            "queries_sent": self.queries_sent,
            "pending_results": len(self._results),
            "steps_waiting": len(self.step_budget),
            "steps_deferred": self.step_budget.deferred,
            "schedule_lag_seconds": {
                "count": lag.answered,
                "median": _clamped_percentile(lag, 0.5),
                "p90": _clamped_percentile(lag, 0.9),
                "p99": _clamped_percentile(lag, 0.99),
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

    def record_latency(self, nameserver, answer):
        if answer.wire is not None or answer.failure == "timeout":
            self._latency.record(nameserver, answer.received_at - answer.rtt_seconds,
                                 answer.rtt_seconds, timed_out=answer.wire is None)

    def finish(self, poll):
        """Take a poll out of flight and hand its result to the writer."""
        self._polls.pop(poll.request.id, None)
        self._results.submit(poll.request)

    def spawn_tcp(self, poll, prepared, timeout_seconds, ignored_replies):
        greenlet = self._group.spawn(poll.query_tcp, prepared, timeout_seconds, ignored_replies)
        greenlet.link_exception(poll.log_crash)

    def _flush_latency_forever(self):
        while True:
            gevent.sleep(self._latency_flush_seconds)
            self.flush_latency()

    @staticmethod
    def _log_flusher_crash(greenlet):
        LOG.error("latency flusher died; round-trip times are no longer stored",
                  exc_info=greenlet.exc_info)


class Poll:
    """The schedule and state of one request's poll, driven by loop callbacks."""

    __slots__ = ("poller", "request", "prepared", "origin", "deadline", "slot", "planned",
                 "skip_lag", "tally", "timer", "timer_action", "on_timer", "stopped")

    def __init__(self, poller, request):
        self.poller = poller
        self.request = request
        self.prepared = digdig.prepare(*conditions.query_for(request))
        # The schedule runs on the monotonic clock so that a wall-clock step
        # cannot shift it; accepted_at anchors it to when the request arrived.
        self.origin = time.monotonic() - (time.time() - request.accepted_at)
        self.deadline = self.origin + request.timeout
        # A request resumed after a restart starts at its latest slot due,
        # and the wait while digaas was down is not counted as schedule lag.
        due_slot = math.floor((time.monotonic() - self.origin) / request.frequency)
        self.slot = max(0, due_slot)
        self.planned = None
        self.skip_lag = due_slot > 0
        self.tally = None
        self.timer = None
        self.timer_action = None
        # Made once, so that a new slot allocates only its timer. It makes a
        # cycle with the poll, which stop() breaks.
        self.on_timer = self._on_timer
        self.stopped = False

    def stop(self):
        self.stopped = True
        self.on_timer = None
        if self.timer is not None:
            self.timer.close()
            self.timer = None

    def schedule_slot(self):
        """Arm the timer of the current slot, or of the deadline when no slot is left."""
        planned = self.origin + self.slot * self.request.frequency
        if planned >= self.deadline:
            self._call_at(self.deadline, Poll._time_out)
        else:
            self.planned = planned
            self._call_at(planned, Poll._on_slot)

    def _call_at(self, monotonic_time, action):
        """Run action(self) at monotonic_time from the loop.

        The action is a plain function kept in a slot, and the timer calls
        the bound method made once per poll. A waiting poll thus has four
        objects that the garbage collector tracks (the request, the poll, its
        timer and that method), and a slot allocates only its timer. That
        keeps full collections, which stop the loop, short.
        """
        if self.stopped:
            return
        if self.timer is not None:
            self.timer.close()
        self.timer_action = action
        self.timer = get_hub().loop.timer(max(0.0, monotonic_time - time.monotonic()))
        self.timer.start(self.on_timer, update=True)

    def _on_timer(self):
        # The budget may leave the step to a later pass of the loop.
        self.poller.step_budget.run(_run_timer_action, self)

    def _step(self, callback, *args):
        # Every step runs here, so that no exception escapes into the loop.
        if self.stopped:
            return
        try:
            callback(*args)
        except Exception as error:
            LOG.exception("request %s: poll failed, marking it ERROR", self.request.id)
            self._fail(f"internal error while polling: {error!r}")

    def _on_slot(self):
        now = time.monotonic()
        poller = self.poller
        if self.skip_lag:
            self.skip_lag = False
        else:
            poller.schedule_lag.add(max(0.0, now - self.planned))

        wait_seconds = poller.rate_limiter.reserve(self.request.nameserver, now)
        if wait_seconds > 0:
            self.request.rate_limit_delay_seconds += wait_seconds
            self._call_at(now + wait_seconds, Poll._send)
        else:
            self._send()

    def _send(self):
        remaining_seconds = self.deadline - time.monotonic()
        if remaining_seconds <= 0:
            self._time_out()
            return

        request = self.request
        timeout_seconds = min(self.poller.dns_query_timeout_seconds, remaining_seconds)
        if request.protocol == digdig.TCP:
            self.poller.spawn_tcp(self, self.prepared, timeout_seconds, 0)
        else:
            digdig.start_udp(self.prepared, request.nameserver, request.port, timeout_seconds,
                             lambda answer: self._step(self._on_udp_answer, answer))

    def _on_udp_answer(self, answer):
        if answer.truncated:
            remaining_seconds = self.deadline - time.monotonic()
            self.poller.spawn_tcp(self, self.prepared, max(0.0, remaining_seconds),
                                  answer.ignored_replies)
        else:
            self._on_answer(answer)

    def query_tcp(self, prepared, timeout_seconds, ignored_replies):
        """Query over TCP in a greenlet (TCP blocks), then go on in the loop."""
        request = self.request
        answer = digdig.send(prepared, request.nameserver, request.port, timeout_seconds,
                             protocol=digdig.TCP)
        answer.ignored_replies += ignored_replies
        get_hub().loop.run_callback(self._step, self._on_answer, answer)

    def _on_answer(self, answer):
        request = self.request
        verdict = conditions.evaluate(request, answer)
        self._record(answer, verdict)

        if verdict.met:
            request.status = model.COMPLETED
            request.completed_at = answer.received_at
            request.duration = answer.received_at - request.start_time
            LOG.info("request %s: COMPLETED after %d queries, duration %.3f s",
                     request.id, request.queries, request.duration)
            self.stop()
            self.poller.finish(self)
            return

        # Fixed rate: the next slot follows this one, but a query that ran
        # past later slots skips to the latest slot already due.
        late_slot = math.floor((time.monotonic() - self.origin) / request.frequency)
        self.slot = max(self.slot + 1, late_slot)
        self.schedule_slot()

    def _time_out(self):
        # The request stays ACCEPTED until the deadline itself, as the client asked.
        request = self.request
        request.status = model.ERROR
        request.error = describe_timeout(request, self.tally or Tally())
        LOG.info("request %s: ERROR, %s", request.id, request.error)
        self.stop()
        self.poller.finish(self)

    def _fail(self, error):
        self.request.status = model.ERROR
        self.request.error = error
        self.stop()
        self.poller.finish(self)

    def _record(self, answer, verdict):
        request = self.request
        poller = self.poller
        request.queries += 1
        poller.queries_sent += 1
        poller.record_latency(request.nameserver, answer)

        tally = self.tally
        if tally is None and (answer.ignored_replies or answer.wire is None or verdict.malformed
                              or answer.rcode != "NOERROR" or not verdict.authoritative):
            tally = self.tally = Tally()
        if answer.ignored_replies:
            tally.ignored_replies += answer.ignored_replies

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
        if tally is not None:
            tally.rcodes[answer.rcode] += 1
            if not verdict.authoritative:
                tally.not_authoritative += 1
        if verdict.serial is not None:
            request.last_serial = verdict.serial
        if not verdict.met:
            request.last_miss_at = answer.received_at

    def log_crash(self, greenlet):
        LOG.error("request %s: TCP query greenlet died", self.request.id,
                  exc_info=greenlet.exc_info)
        self._step(self._fail, f"internal error while polling: {greenlet.exception!r}")


@dataclasses.dataclass(slots=True)
class Tally:
    """Counts of what a poll's queries met on the way, for its error message.

    A poll makes one only when a query meets something other than a plain
    NOERROR answer, and its rcodes count from then on.
    """

    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    rcodes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    not_authoritative: int = 0
    ignored_replies: int = 0


def _clamped_percentile(histogram, fraction):
    """Return a histogram percentile kept between its exact min and max, or None."""
    value = latency.percentile_seconds(histogram.counts, fraction)
    if value is None:
        return None
    return min(max(value, histogram.min_seconds), histogram.max_seconds)


def format_time(unix_seconds):
    """Return unix seconds as an ISO 8601 UTC time, for messages."""
    return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


def _run_timer_action(poll):
    poll._step(poll.timer_action, poll)


def describe_timeout(request, tally):
    """Return the error message of a request whose deadline passed."""
    total = request.queries
    server = f"nameserver {request.nameserver} port {request.port}"
    parts = []

    refused = tally.rcodes.pop("REFUSED", 0)
    queries = "1 query" if total == 1 else f"{total} queries"
    if refused == total and total:
        parts.append(f"{server} refused {refused} of {queries}")
    else:
        # Naming the nameserver helps most when no response came back.
        parts.append(f"{queries} to {server}")
        if refused:
            parts.append(f"{refused} refused")

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
