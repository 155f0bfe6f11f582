"""Group commit: store the requests of concurrent POSTs in one write.

One sqlite commit or one Redis round trip per POST dominated the cost of
accepting a request. The first POST that finds no write under way becomes
the leader. It first lets the other ready greenlets run, so that their POSTs
join the batch. Then it writes every queued request with one create_many()
and wakes each POST with the outcome. Each POST still returns only after its
own request is stored, and sees the storage's error if the write failed.
"""

import gevent
import gevent.event


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
                gevent.sleep(0)
                while self._queue:
                    batch, self._queue = self._queue, []
                    self._write(batch)
            finally:
                self._writing = False

        return outcome.get()

    def _write(self, batch):
        try:
            self._create_many([request for request, _ in batch])
        except Exception as error:
            for _, outcome in batch:
                outcome.set_exception(error)
            return
        for _, outcome in batch:
            outcome.set(None)
