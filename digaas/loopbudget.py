"""A cap on the poll steps that one pass of the gevent loop runs.

libev runs the callback of every timer that has expired in the same pass of
the loop, and uwsgi's gevent plugin accepts one connection per pass. A
worker whose polls fall behind (more slots due than one core can serve)
then runs thousands of poll steps per pass and accepts a few tens of
connections per second. With a cap, the steps beyond it wait in a queue
for the next passes, and each pass also polls the sockets, so new POSTs
and GETs get their turn. The queue is first in, first out, and a step that
waits in it shows as schedule lag.
"""

import collections

from gevent import get_hub

# About 5 ms of poll steps (sending a query is 20 to 30 us of CPU) before
# the loop polls the sockets again.
MAX_STEPS_PER_LOOP_PASS = 200


class StepBudget:
    """The step count of the current loop pass, with a queue for the steps beyond the cap."""

    def __init__(self, max_steps_per_pass=None, current_pass=None):
        self._max_steps = max_steps_per_pass or MAX_STEPS_PER_LOOP_PASS
        # The number of the loop pass running now: libev's iteration count.
        self._current_pass = current_pass or _loop_iteration
        self._pass = None
        self._steps = 0
        self._queued = collections.deque()
        self._timer = None
        # Steps that have waited for a later pass, since the start.
        self.deferred = 0

    def __len__(self):
        """Return the number of steps waiting for a later pass."""
        return len(self._queued)

    def run(self, step, argument):
        """Call step(argument) now, or in a later pass when this pass has used its budget.

        Steps run in the order they came: while any waits, a new one waits
        behind it. A step must not raise.
        """
        if self._queued or not self._take():
            self._queue(step, argument)
            return
        step(argument)

    def _take(self):
        current = self._current_pass()
        if current != self._pass:
            self._pass = current
            self._steps = 0
        self._steps += 1
        return self._steps <= self._max_steps

    def _queue(self, step, argument):
        self._queued.append((step, argument))
        self.deferred += 1
        if self._timer is None:
            self._arm()

    def _arm(self):
        # A timer due now fires in the next pass, after the loop has polled
        # the sockets.
        self._timer = get_hub().loop.timer(0.0)
        self._timer.start(self._run_queued)

    def _run_queued(self):
        self._timer.close()
        self._timer = None
        queued = self._queued
        try:
            while queued and self._take():
                step, argument = queued.popleft()
                step(argument)
        finally:
            if queued:
                self._arm()


def _loop_iteration():
    return get_hub().loop.iteration
