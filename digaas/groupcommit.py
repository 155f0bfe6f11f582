"""Group commit: store the requests of concurrent POSTs in one write.

One sqlite commit or one Redis round trip per POST dominated the cost of
accepting a request. In the API benchmark, batching raised the POST rate on
sqlite by about half. The first POST that finds no write under way becomes
the leader. It waits while other POSTs keep joining the batch, until the
loop has nothing else to run or a few milliseconds have passed, then writes
every queued request with one create_many() and wakes each POST with the
outcome. Each POST still returns only after its own request is stored, and
sees the storage's error if the write failed.
"""

import logging

import gevent
import gevent.event

from digaas import storage

LOG = logging.getLogger(__name__)

# The maximum time a leader waits for more POSTs to join its batch.
MAX_GATHER_SECONDS = 0.006


class GroupCommit:
    """Batches calls of create_many(requests, json_texts) from concurrent greenlets."""

    def __init__(self, create_many):
        self._create_many = create_many
        self._queue = []
        self._writing = False

    def create(self, request, json_text):
        """Store request, whose to_json() is json_text, with the others queued now.

        Raises what the storage raised.
        """
        outcome = gevent.event.AsyncResult()
        self._queue.append((request, json_text, outcome))

        if not self._writing:
            self._writing = True
            self._lead()

        return outcome.get()

    def _lead(self):
        # The leader writes one batch, its own, and leaves the POSTs that
        # queued meanwhile to a writer greenlet. A write that waits for the
        # storage (a Redis round trip) lets more POSTs queue. A leader that
        # wrote until the queue was empty would keep its own client waiting
        # while POSTs keep coming: up to 1.8 s in a bench_api.py run on Redis.
        try:
            self._gather()
            batch, self._queue = self._queue, []
            self._write(batch)
        finally:
            if self._queue:
                writer = gevent.spawn(self._write_queued)
                writer.link_exception(_log_writer_failure)
            else:
                self._writing = False

    def _write_queued(self):
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                self._write(batch)
        finally:
            # Empty unless this greenlet was killed: then the POSTs still
            # queued get an error instead of waiting for ever.
            for *_, outcome in self._queue:
                outcome.set_exception(storage.StorageError(
                    "the writer stopped before storing this request; nothing was stored"))
            self._queue = []
            self._writing = False

    def _gather(self):
        # uwsgi accepts one connection per pass of the loop, so the POSTs of
        # concurrent clients arrive over several passes, not in one. The
        # leader waits until the loop is idle, when every connection and
        # body that had arrived has been read, and again while that brought
        # new POSTs. On an idle service the first wait ends at once. A
        # fixed 2 ms wait instead left the worker idle for about a tenth of
        # a bench_api.py POST run, at 0.43 of the echo app against 0.47 to
        # 0.50 this way.
        with gevent.Timeout(MAX_GATHER_SECONDS, False):
            while True:
                queued = len(self._queue)
                gevent.idle()
                if len(self._queue) == queued:
                    return

    def _write(self, batch):
        try:
            self._create_many([request for request, _, _ in batch],
                              [json_text for _, json_text, _ in batch])
        except Exception as error:
            for *_, outcome in batch:
                outcome.set_exception(error)
            return
        except BaseException:
            # The writing greenlet was killed: the storage may or may not
            # have the batch, and its POSTs must not wait for ever.
            for *_, outcome in batch:
                outcome.set_exception(storage.StorageError(
                    "the write of this request was interrupted; it may not be stored"))
            raise
        for *_, outcome in batch:
            outcome.set(None)


def _log_writer_failure(writer):
    LOG.error("the group commit writer failed; the POSTs it held got an error",
              exc_info=writer.exc_info)
