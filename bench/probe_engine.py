"""Run N polls in this process against a throwaway BIND9 and print the schedule lag.

    python bench/probe_engine.py N FREQUENCY_SECONDS WINDOW_SECONDS

The polls wait for a serial the zone never reaches, so each sends one query
per FREQUENCY_SECONDS. After a 2 s warm-up the script measures for
WINDOW_SECONDS: the queries sent, the CPU time, the schedule lag (how late
each query went out against its slot), the peak RSS, and the pauses of
Python's cyclic garbage collector by generation, from gc.callbacks. With
NOGC=1 in the environment the collector is disabled.
"""

from gevent import monkey
monkey.patch_all()

import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from digaas import latency  # noqa: E402
from digaas import localbind  # noqa: E402
from digaas import model  # noqa: E402
from digaas import poll  # noqa: E402
from digaas import storage_sqlite  # noqa: E402

WARMUP_SECONDS = 2.0


class CollectorPauses:
    """Durations of the collector's runs by generation, while recording is on."""

    def __init__(self):
        self.recording = False
        self.seconds_by_generation = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
        elif self.recording:
            pause_seconds = time.perf_counter() - self._started
            self.seconds_by_generation[info["generation"]].append(pause_seconds)

    def report(self):
        lines = []
        for generation, pauses in self.seconds_by_generation.items():
            if pauses:
                lines.append(f"gc generation {generation}: {len(pauses)} runs,"
                             f" max {max(pauses) * 1e3:.1f} ms, total {sum(pauses):.2f} s")
        lines.append(f"objects tracked by the collector: {len(gc.get_objects())}")
        return "\n".join(lines)


def main(argv):
    count, frequency_seconds, window_seconds = int(argv[0]), float(argv[1]), float(argv[2])
    logging.basicConfig(level=logging.ERROR)
    if os.environ.get("NOGC"):
        gc.disable()
    pauses = CollectorPauses()
    gc.callbacks.append(pauses)

    with tempfile.TemporaryDirectory() as workdir, localbind.LocalBind(workdir + "/bind") as bind:
        bind.add_zone("probe.test.", serial=1)
        backend = storage_sqlite.SqliteStorage(workdir + "/digaas.sqlite3",
                                               busy_timeout_seconds=5)
        poller = poll.Poller(backend, dns_query_timeout_seconds=1.0,
                             max_queries_per_second_per_nameserver=1e9)
        rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        requests = [model.PollRequest(
            id=f"p{index}", nameserver="127.0.0.1", port=bind.port, zone_name="probe.test.",
            serial=2, start_time=0, timeout=window_seconds + 5, frequency=frequency_seconds,
            condition=model.SERIAL_NOT_LOWER, accepted_at=0) for index in range(count)]
        backend.create_many(requests)

        # Spread the first slots evenly over one frequency.
        first_slot = time.time() + 0.5
        for index, request in enumerate(requests):
            request.accepted_at = first_slot + index * frequency_seconds / count
            poller.start(request)
        gevent.sleep(WARMUP_SECONDS)

        poller.schedule_lag = latency.Histogram("lag", 0)
        poller.queries_sent = 0
        pauses.recording = True
        started = time.monotonic()
        cpu_started = time.process_time()
        gevent.sleep(window_seconds)
        elapsed_seconds = time.monotonic() - started
        cpu_seconds = time.process_time() - cpu_started
        pauses.recording = False

        lag = poller.schedule_lag
        peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"n={count} F={frequency_seconds} sent={poller.queries_sent}"
              f" rate={poller.queries_sent / elapsed_seconds:.0f}/s"
              f" cpu={cpu_seconds:.1f}s of {elapsed_seconds:.1f}s"
              f" lag p50={latency.percentile_seconds(lag.counts, .5) * 1e3:.1f}ms"
              f" p99={latency.percentile_seconds(lag.counts, .99) * 1e3:.1f}ms"
              f" max={lag.max_seconds * 1e3:.0f}ms"
              f" maxrss={peak_rss_kib / 1024:.0f}MiB (before {rss_before_kib / 1024:.0f}MiB)")
        print(pauses.report())
        poller.kill(timeout_seconds=5)
        backend.close()


if __name__ == "__main__":
    main(sys.argv[1:])
