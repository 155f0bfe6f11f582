"""The cap on poll steps per pass of the gevent loop."""

import gevent
from gevent import get_hub

from digaas import loopbudget


def test_steps_beyond_cap_run_in_later_passes():
    budget = loopbudget.StepBudget(max_steps_per_pass=3)
    ran = []

    def step(number):
        ran.append((number, get_hub().loop.iteration))

    # Steps started from one loop callback, as libev runs expired timers.
    get_hub().loop.run_callback(lambda: [budget.run(step, number) for number in range(10)])
    for _ in range(100):
        if len(ran) == 10:
            break
        gevent.sleep(0.01)

    assert [number for number, _ in ran] == list(range(10))
    passes = {}
    for _, iteration in ran:
        passes[iteration] = passes.get(iteration, 0) + 1
    assert max(passes.values()) <= 3
    assert len(passes) >= 4
    assert len(budget) == 0


def test_new_step_waits_behind_queued_ones():
    # The test sets the pass number, so that a step can arrive in a new pass
    # before the queued steps have run.
    current_pass = [0]
    budget = loopbudget.StepBudget(max_steps_per_pass=2, current_pass=lambda: current_pass[0])
    ran = []

    for number in range(4):
        budget.run(ran.append, number)
    current_pass[0] = 1
    budget.run(ran.append, "late")

    assert ran == [0, 1]
    assert len(budget) == 3
    gevent.sleep(0.05)
    assert ran == [0, 1, 2, 3]
    current_pass[0] = 2
    gevent.sleep(0.05)
    assert ran == [0, 1, 2, 3, "late"]
    assert len(budget) == 0
