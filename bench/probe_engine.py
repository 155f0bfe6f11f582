"""Probe: N polls in one process against a local BIND9, frequency F, for T seconds."""
from gevent import monkey
monkey.patch_all()

import logging, sys, tempfile, time, resource
logging.basicConfig(level=logging.ERROR)
import gevent, gc, os
if os.environ.get("NOGC"): gc.disable()
from digaas import latency, localbind, model, poll, storage_sqlite

n, frequency, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
with tempfile.TemporaryDirectory() as tmp:
    with localbind.LocalBind(tmp + "/bind") as bind:
        bind.add_zone("probe.test.", serial=1)
        backend = storage_sqlite.SqliteStorage(tmp + "/db.sqlite3", busy_timeout_seconds=5)
        poller = poll.Poller(backend, dns_query_timeout_seconds=1.0,
                             max_queries_per_second_per_nameserver=1e9)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        requests = []
        for index in range(n):
            request = model.PollRequest(
                id=f"p{index}", nameserver="127.0.0.1", port=bind.port, zone_name="probe.test.",
                serial=2, start_time=0, timeout=seconds + 5, frequency=frequency,
                condition=model.SERIAL_NOT_LOWER, accepted_at=0)
            backend.create(request)
            requests.append(request)
        now = time.time() + 0.5
        for index, request in enumerate(requests):
            request.accepted_at = now + index * frequency / n
            poller.start(request)
        gevent.sleep(2.0)
        poller.schedule_lag = latency.Histogram("lag", 0)
        poller.queries_sent = 0
        started = time.monotonic()
        cpu0 = time.process_time()
        gevent.sleep(seconds * 0.5)
        sent_half = poller.queries_sent
        gevent.sleep(seconds * 0.5)
        elapsed = time.monotonic() - started
        lag = poller.schedule_lag
        print(f"n={n} F={frequency} sent={poller.queries_sent} rate={poller.queries_sent/elapsed:.0f}/s"
              f" cpu={time.process_time()-cpu0:.1f}s of {elapsed:.1f}s"
              f" lag p50={latency.percentile_seconds(lag.counts, .5)*1e3:.1f}ms"
              f" p99={latency.percentile_seconds(lag.counts, .99)*1e3:.1f}ms max={lag.max_seconds*1e3:.0f}ms"
              f" maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f}MiB"
              f" (before {rss_before/1024:.0f}MiB)")
        poller.kill(timeout_seconds=5)
