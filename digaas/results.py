"""Write poll results to storage in batches, keeping the ones an outage rejects.

Polls hand their results to the ResultWriter from the gevent loop, which
must not block, so a greenlet of the writer does the storage writes: every
result waiting at that moment, in one batch (one sqlite transaction, one
Redis pipeline). A perf test is expensive to repeat, so when the storage
fails (Redis restarting, a locked or full sqlite file) the results stay
queued and the batch is tried again every retry interval, in the order the
polls finished. The queue is bounded: past max_pending results, each further
one is dropped with an error log line that contains the whole result.
"""

import collections
import json
import logging

import gevent
import gevent.event
import gevent.lock

from digaas import storage

LOG = logging.getLogger(__name__)

# Most results written in one batch.
MAX_BATCH = 1000

# During an outage, one log line per this many failed retries.
RETRIES_PER_LOG_LINE = 30


class ResultWriter:
    """Writes results from a greenlet of its own, in batches, retrying on failure."""

    def __init__(self, storage_backend, *, max_pending, retry_seconds):
        self._storage = storage_backend
        self._max_pending = max_pending
        self._retry_seconds = retry_seconds
        self._pending = collections.deque()
        self._wakeup = gevent.event.Event()
        self._greenlet = None
        self._failing = False
        self._failed_retries = 0
        # One batch at a time, so that flush() during a stop and the writer
        # greenlet never take the same results.
        self._writing = gevent.lock.Semaphore()

    def __len__(self):
        """Return the number of results not yet written."""
        return len(self._pending)

    def submit(self, request):
        """Queue a copy of the request's result fields, without blocking (no I/O here)."""
        if len(self._pending) >= self._max_pending:
            LOG.error("request %s: result dropped because %d results already wait for"
                      " the storage; the result was %s", request.id, len(self._pending),
                      json.dumps(request.to_dict()))
            return

        self._pending.append(request.copy())
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._write_forever)
            self._greenlet.link_exception(self._log_writer_crash)
        self._wakeup.set()

    def flush(self):
        """Write every queued result now, in this greenlet; return how many are left."""
        while self._pending:
            if not self._write_batch():
                break
        return len(self._pending)

    def stop(self):
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def _write_forever(self):
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                if not self._write_batch():
                    gevent.sleep(self._retry_seconds)

    def _write_batch(self):
        """Write up to MAX_BATCH queued results; return False if the storage failed."""
        with self._writing:
            return self._write_batch_locked()

    def _write_batch_locked(self):
        if not self._pending:
            return True
        batch = [self._pending[index] for index in range(min(MAX_BATCH, len(self._pending)))]
        try:
            missing = self._storage.update_results(batch)
        except storage.StorageError as error:
            if not self._failing:
                LOG.warning("request %s: storing the %s result failed, keeping it to retry"
                            " every %s s (%d results wait): %s", batch[0].id,
                            batch[0].status, self._retry_seconds, len(self._pending), error)
            else:
                self._failed_retries += 1
                if self._failed_retries % RETRIES_PER_LOG_LINE == 0:
                    LOG.warning("%d results still wait for the storage after %d retries: %s",
                                len(self._pending), self._failed_retries, error)
            self._failing = True
            return False

        for _ in batch:
            self._pending.popleft()
        for request in batch:
            if request.id in missing:
                LOG.error("request %s: the %s result was not stored because the storage no"
                          " longer has the request; the result was %s", request.id,
                          request.status, json.dumps(request.to_dict()))
        if self._failing and not self._pending:
            LOG.info("every queued result is stored")
            self._failing = False
            self._failed_retries = 0
        return True

    @staticmethod
    def _log_writer_crash(greenlet):
        LOG.error("result writer greenlet died; results are written only at the next"
                  " submit or stop", exc_info=greenlet.exc_info)
