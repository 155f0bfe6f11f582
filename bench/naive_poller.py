"""The naive poll engine that bench_poll.py compares digaas with.

One greenlet per request, as the original digaas ran it: send a SOA query
with dns.query.udp (a new socket per query), then gevent.sleep(frequency)
after each answer, so that every round trip and scheduling delay pushes the
next query later. Run by bench_poll.py in its own process:

    python bench/naive_poller.py --port PORT --zones-file FILE --requests 20000 \
        --frequency 1 --warmup 5 --duration 30

It prints `START <unix time>` when its greenlets exist, so that the parent
can read BIND's counters over the same window, and at the end one line of
JSON with what it sent in the window [START + warmup, START + warmup +
duration] and how late those queries went out. A query's planned time is
the previous planned time plus frequency, so the lag is how far the
sleep-after-answer schedule has drifted from a fixed-rate one.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402
import gevent  # noqa: E402
import gevent.pool  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from digaas import latency  # noqa: E402

NAMESERVER = "127.0.0.1"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="DNS port of the nameserver on 127.0.0.1")
    parser.add_argument("--zones-file", required=True,
                        help="file with one zone name a line; request i polls zone i modulo their count")
    parser.add_argument("--requests", type=int, default=20000, help="greenlets, one per request (default 20000)")
    parser.add_argument("--frequency", type=float, default=1.0, help="seconds slept after each response (default 1)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the window (default 30)")
    parser.add_argument("--query-timeout", type=float, default=1.0, help="seconds per query (default 1)")
    return parser.parse_args(argv)


class Counters:
    """Counts and schedule lag of the queries sent inside the measurement window."""

    def __init__(self, window_start, window_end):
        self.window_start = window_start
        self.window_end = window_end
        self.sent = 0
        self.timeouts = 0
        self.errors = 0
        self.lag = latency.Histogram("naive lag", 0)

    def in_window(self, wall_time):
        return self.window_start <= wall_time < self.window_end


def poll_forever(query_wire_source, port, first_planned, frequency, query_timeout, counters):
    planned = first_planned
    gevent.sleep(max(0.0, planned - time.time()))
    while True:
        sent_at = time.time()
        query = query_wire_source()
        try:
            dns.query.udp(query, NAMESERVER, port=port, timeout=query_timeout)
            failed = None
        except dns.exception.Timeout:
            failed = "timeout"
        except (dns.exception.DNSException, OSError):
            failed = "error"

        if counters.in_window(sent_at):
            counters.sent += 1
            counters.lag.add(max(0.0, sent_at - planned))
            if failed == "timeout":
                counters.timeouts += 1
            elif failed == "error":
                counters.errors += 1

        gevent.sleep(frequency)
        planned += frequency


def make_query_factory(zone_name):
    def make():
        query = dns.message.make_query(zone_name, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        return query
    return make


def main(argv=None):
    args = parse_arguments(argv)
    zones = pathlib.Path(args.zones_file).read_text().split()

    start = time.time()
    counters = Counters(start + args.warmup, start + args.warmup + args.duration)
    group = gevent.pool.Group()
    for index in range(args.requests):
        # The first queries are spread evenly over one frequency interval.
        first_planned = start + index * args.frequency / args.requests
        group.spawn(poll_forever, make_query_factory(zones[index % len(zones)]), args.port,
                    first_planned, args.frequency, args.query_timeout, counters)
    print(f"START {start:.6f}", flush=True)

    gevent.sleep(max(0.0, counters.window_end - time.time()))

    lag = counters.lag
    print(json.dumps({
        "window_start": counters.window_start,
        "window_end": counters.window_end,
        "queries_sent": counters.sent,
        "timeouts": counters.timeouts,
        "errors": counters.errors,
        "lag_bins": {str(index): count for index, count in sorted(lag.counts.items())},
        "lag_max_seconds": lag.max_seconds if lag.answered else None,
    }), flush=True)

    # Killing 20000 greenlets that wait in dns.query.udp takes longer than
    # the parent waits, and nothing is left to clean up: exit at once.
    os._exit(0)


if __name__ == "__main__":
    main()
