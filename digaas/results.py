"""Write poll results to storage, keeping the ones a storage outage rejects.

A perf test is expensive to repeat, so a result that cannot be written (Redis
restarting, a locked or full sqlite file) is kept in memory and written
again every retry interval, in the order the polls finished. The queue is
bounded: past max_pending results, each further one is dropped with an
error log line that contains the whole result.
"""

import collections
import logging

import gevent

from digaas import storage

LOG = logging.getLogger(__name__)


class ResultWriter:
    """Writes results now, or later when the storage is back."""

    def __init__(self, storage_backend, *, max_pending, retry_seconds):
        self._storage = storage_backend
        self._max_pending = max_pending
        self._retry_seconds = retry_seconds
        self._pending = collections.deque()
        self._retrier = None

    def __len__(self):
        """Return the number of results waiting for the storage."""
        return len(self._pending)

    def write(self, request):
        """Write the request's result fields, or queue them if the storage fails."""
        if not self._pending:
            try:
                self._storage.update_result(request)
                return
            except storage.RequestNotFound as error:
                _log_lost(request, error)
                return
            except storage.StorageError as error:
                LOG.warning("request %s: storing the %s result failed, keeping it to"
                            " retry every %s s: %s", request.id, request.status,
                            self._retry_seconds, error)

        if len(self._pending) >= self._max_pending:
            LOG.error("request %s: result dropped because %d results already wait for"
                      " the storage; the result was %r", request.id, len(self._pending),
                      request.to_dict())
            return

        # A copy, so that the queued result is the one of this moment.
        self._pending.append(type(request).from_dict(request.to_dict()))
        if self._retrier is None or self._retrier.dead:
            self._retrier = gevent.spawn(self._retry_until_empty)
            self._retrier.link_exception(self._log_retrier_crash)

    def flush(self):
        """Try once to write every queued result; return how many are still queued."""
        while self._pending:
            request = self._pending[0]
            try:
                self._storage.update_result(request)
            except storage.RequestNotFound as error:
                _log_lost(request, error)
            except storage.StorageError as error:
                LOG.warning("%d results still wait for the storage: %s",
                            len(self._pending), error)
                break
            self._pending.popleft()
            if not self._pending:
                LOG.info("every queued result is stored")
        return len(self._pending)

    def stop(self):
        if self._retrier is not None:
            self._retrier.kill()
            self._retrier = None

    def _retry_until_empty(self):
        while self._pending:
            gevent.sleep(self._retry_seconds)
            self.flush()

    @staticmethod
    def _log_retrier_crash(greenlet):
        LOG.error("result retry greenlet died; queued results are written only at"
                  " the next failure or stop", exc_info=greenlet.exc_info)


def _log_lost(request, error):
    LOG.error("request %s: the %s result was not stored because the storage no longer"
              " has the request (%s); the result was %r", request.id, request.status, error,
              request.to_dict())
