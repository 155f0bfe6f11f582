"""Measure the memory one digaas worker uses per poll request in flight.

For each size N (default 20000 and 100000) the script starts digaas
(LocalService: one uwsgi worker, sqlite) against a throwaway BIND9 with
--zones zones, posts 100 short requests to warm the worker up, and reads
the worker's VmRSS from /proc/PID/status. Then it posts N requests at
--frequency whose condition is never met (serial_not_lower with a serial
above the zones'), reads VmRSS once all are in flight, waits --cycles poll
cycles and reads it again. The result per size is

    KiB per request = (VmRSS after the cycles - VmRSS before posting) / N

The worker is the only child of the uwsgi master. Over the cycles the script
also reads BIND's query counter and GET /metrics, to check that the polls
really run: BIND should see about N / frequency queries per second.

    python bench/bench_memory.py            # full run, about 6 minutes
    python bench/bench_memory.py --quick    # smoke run, about 1 minute

Results print as a table and go to bench/results/memory-<UTC time>.json.
All traffic stays on 127.0.0.1.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from digaas import latency  # noqa: E402
from digaas.localbind import LocalBind  # noqa: E402
from digaas.localservice import LocalService  # noqa: E402

ZONE_SERIAL = 1000
UNREACHED_SERIAL = 2000
WARMUP_REQUESTS = 100
WARMUP_TIMEOUT_SECONDS = 1.0
TARGET_KIB_PER_REQUEST = 8.0


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Measure a digaas worker's resident memory per poll request in flight.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 2000 and 5000, frequency 2 s, one cycle")
    parser.add_argument("--sizes", type=int, nargs="+", help="requests in flight, one run each (default 20000 100000)")
    parser.add_argument("--frequency", type=float, help="seconds between a request's queries (default 10)")
    parser.add_argument("--cycles", type=int, help="poll cycles to wait after posting before the last reading (default 2)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="poll timeout of the requests in seconds; it must outlast posting and the"
                             " cycles, and the script checks that all are still in flight (default 3600)")
    parser.add_argument("--zones", type=int, default=1000, help="zones the requests are spread over (default 1000)")
    parser.add_argument("--post-threads", type=int, default=64,
                        help="threads that POST the requests, each on a new connection (default 64)")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait for a 1-minute load average below this before starting (default 1.5)")
    parser.add_argument("--max-load-wait", type=float, default=600.0,
                        help="seconds to wait at most for that load (default 600; 0 skips the wait)")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [2000, 5000] if args.quick else [20000, 100000]
    if args.frequency is None:
        args.frequency = 2.0 if args.quick else 10.0
    if args.cycles is None:
        args.cycles = 1 if args.quick else 2
    return args


def metrics(url):
    response = requests.get(url + "/metrics", timeout=10, headers=benchlib.CLOSE_CONNECTION)
    response.raise_for_status()
    return response.json()


def body(port, zone, frequency, timeout_seconds):
    return {"nameserver": "127.0.0.1", "port": port, "zone_name": zone, "serial": UNREACHED_SERIAL,
            "condition": "serial_not_lower", "start_time": time.time(), "timeout": timeout_seconds,
            "frequency": frequency}


def measure_size(bind, zones, size, args, workdir):
    settings = {"MAX_IN_FLIGHT": size + WARMUP_REQUESTS + 1000,
                "MAX_QUERIES_PER_SECOND_PER_NAMESERVER": 1e6,
                "DNS_QUERY_TIMEOUT_SECONDS": 1, "LOG_LEVEL": "WARNING"}
    service_dir = pathlib.Path(workdir) / f"service-{size}"
    service_dir.mkdir()
    service = LocalService(service_dir, settings=settings).start()
    result = {"requests": size, "frequency": args.frequency, "settings": settings}
    try:
        worker = benchlib.uwsgi_worker_pids(service.process.pid, 1)[0]
        result["rss_kib_started"] = benchlib.rss_kib(worker)

        # The first requests import and allocate what every later one reuses.
        warmup = [body(bind.port, zones[index % len(zones)], WARMUP_TIMEOUT_SECONDS, WARMUP_TIMEOUT_SECONDS)
                  for index in range(WARMUP_REQUESTS)]
        _, statuses, _ = benchlib.post_requests(service.url, warmup, args.post_threads)
        if statuses != {202: WARMUP_REQUESTS}:
            raise RuntimeError(f"warm-up requests returned {statuses}")
        time.sleep(WARMUP_TIMEOUT_SECONDS + 1.0)
        result["rss_kib_before"] = benchlib.rss_kib(worker)

        print(f"{size}: posting", flush=True)
        bodies = [body(bind.port, zones[index % len(zones)], args.frequency, args.timeout)
                  for index in range(size)]
        _, statuses, post_seconds = benchlib.post_requests(service.url, bodies, args.post_threads)
        result["post"] = {"seconds": round(post_seconds, 1), "statuses": statuses}
        print(f"{size}: posted in {post_seconds:.1f} s: {statuses}", flush=True)
        result["rss_kib_posted"] = benchlib.rss_kib(worker)

        first_metrics = metrics(service.url)
        first_queries = bind.query_counts()["total"]
        first_time = time.time()
        time.sleep(args.cycles * args.frequency)
        second_queries = bind.query_counts()["total"]
        second_time = time.time()
        second_metrics = metrics(service.url)
        result["rss_kib_after_cycles"] = benchlib.rss_kib(worker)
        result["vm_hwm_kib"] = peak_rss_kib(worker)

        result["in_flight"] = second_metrics["in_flight"]
        result["bind_queries_per_second"] = round((second_queries - first_queries) / (second_time - first_time), 1)
        counts = {}
        for index, count in second_metrics["schedule_lag_bins"].items():
            difference = count - first_metrics["schedule_lag_bins"].get(index, 0)
            if difference > 0:
                counts[int(index)] = difference
        lag_p99 = latency.percentile_seconds(counts, 0.99)
        result["lag_p99_ms"] = None if lag_p99 is None else round(lag_p99 * 1e3, 1)

        growth = result["rss_kib_after_cycles"] - result["rss_kib_before"]
        result["kib_per_request"] = round(growth / size, 2)
        result["kib_per_request_posted"] = round((result["rss_kib_posted"] - result["rss_kib_before"]) / size, 2)
        if result["in_flight"] != size:
            result["warning"] = (f"{result['in_flight']} requests in flight at the last reading, not {size};"
                                 " raise --timeout")
            print(f"{size}: WARNING: {result['warning']}", flush=True)
    finally:
        stop_started = time.monotonic()
        try:
            service.stop()
            result["stop_seconds"] = round(time.monotonic() - stop_started, 1)
        except RuntimeError as error:
            result["stop_error"] = str(error).splitlines()[0]
    return result


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def print_table(result):
    rows = []
    for run in result["runs"]:
        rows.append([run["requests"], run["in_flight"], run["post"]["seconds"], run["rss_kib_before"] // 1024,
                     run["rss_kib_posted"] // 1024, run["rss_kib_after_cycles"] // 1024,
                     run["vm_hwm_kib"] // 1024, run["kib_per_request_posted"], run["kib_per_request"],
                     run["bind_queries_per_second"], run["lag_p99_ms"]])
    print()
    print(benchlib.format_table(
        ["requests", "in flight", "post s", "RSS before MiB", "RSS posted MiB", "RSS after cycles MiB",
         "peak MiB", "KiB/req posted", "KiB/req after cycles", "BIND q/s", "lag p99 ms"], rows))
    print(f"target: at most {TARGET_KIB_PER_REQUEST:g} KiB per request (after cycles)")
    if len(result["runs"]) >= 2:
        first, last = result["runs"][0], result["runs"][-1]
        marginal = ((last["rss_kib_after_cycles"] - first["rss_kib_after_cycles"])
                    / (last["requests"] - first["requests"]))
        result["marginal_kib_per_request"] = round(marginal, 2)
        print(f"marginal KiB per request between {first['requests']} and {last['requests']}: {marginal:.2f}")


def main(argv=None):
    args = parse_arguments(argv)
    benchlib.exit_on_sigterm()
    result = benchlib.run_header("memory")
    result["arguments"] = vars(args)
    if args.max_load_wait > 0:
        result["load"] = benchlib.wait_for_quiet_machine(args.max_load, args.max_load_wait)

    zones = [f"z{index}.memory.bench." for index in range(args.zones)]
    result["runs"] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        with LocalBind(os.path.join(workdir, "bind"), listen_ipv6=False) as bind:
            benchlib.add_zones(bind, zones, ZONE_SERIAL)
            for size in args.sizes:
                load = benchlib.load_average()
                run = measure_size(bind, zones, size, args, workdir)
                run["load_average_before"] = load
                result["runs"].append(run)
    result["load_average_at_end"] = benchlib.load_average()

    print_table(result)
    path = benchlib.write_results("memory", result)
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
