"""Group commit: store the requests of concurrent POSTs in one write.

One sqlite commit or one Redis round trip per POST dominated the cost of
accepting a request. In the API benchmark, batching raised the POST rate on
sqlite by about half. The first POST that finds no write under way becomes
the leader. It waits while other POSTs keep joining the batch, a few
milliseconds at most, then writes every queued request with one
create_many() and wakes each POST with the outcome. Each POST still returns only after its
own request is stored, and sees the storage's error if the write failed.
"""

import time

import gevent
import gevent.event

# The leader waits in steps while more POSTs join its batch, up to a limit.
# On an idle service this adds one step to a POST. Under load the batches grow.
GATHER_STEP_SECONDS = 0.002
MAX_GATHER_SECONDS = 0.006


class GroupCommit:
    """Batches calls of create_many(requests) from concurrent greenlets."""

    def __init__(self, create_many):
        self._create_many = create_many
        self._queue = []
        self._writing = False

    def create(self, request):
        """Store request with the others queued now; raise what the storage raised."""
        outcome = gevent.event.AsyncResult()
        self._queue.append((request, outcome))

        if not self._writing:
            self._writing = True
            try:
                self._gather()
                while self._queue:
                    batch, self._queue = self._queue, []
                    self._write(batch)
            finally:
                self._writing = False

        return outcome.get()

    def _gather(self):
        # uwsgi accepts one connection per pass of the loop, so the POSTs of
        # concurrent clients arrive over several passes, not in one.
        deadline = time.monotonic() + MAX_GATHER_SECONDS
        queued = 0
        while len(self._queue) > queued and time.monotonic() < deadline:
            queued = len(self._queue)
            gevent.sleep(GATHER_STEP_SECONDS)

    def _write(self, batch):
        try:
            self._create_many([request for request, _ in batch])
        except Exception as error:
            for _, outcome in batch:
                outcome.set_exception(error)
            return
        for _, outcome in batch:
            outcome.set(None)
