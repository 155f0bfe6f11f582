"""Measure the digaas poll engine against a local BIND9 and compare it with a naive engine and dnsperf.

One run starts one throwaway BIND9 (LocalBind, 127.0.0.1 only) with
--zones zones and --fidelity-zones more, then runs these phases in turn:

- dnsperf: `dnsperf` sends SOA queries for the same zones as fast as it can
  for --dnsperf-seconds, to show how many queries per second this BIND9
  serves on this machine while a load generator shares the CPUs.
- naive: bench/naive_poller.py in a child process, one gevent greenlet per
  request that calls dns.query.udp and then gevent.sleep(frequency), with
  --requests greenlets at --frequency.
- one: the real service (LocalService, `digaas serve`, PROCESSES=1) with
  --requests poll requests in flight whose condition is never met
  (serial_not_lower with a serial above the zones'). After --warmup seconds
  the script reads GET /metrics and BIND's query counters, waits
  --duration seconds and reads both again. Then the timing-fidelity check
  runs with that load still in flight. --fidelity-zones requests wait for a
  serial one above their zone's, and the script raises each zone's serial
  at a known time. Every duration must fall between the change and one
  frequency (plus 20 ms) after it.
- two: the same as "one" with PROCESSES=2 and --requests-two requests.
- naive-max and one-max: the naive engine and "one" with --requests-max
  requests at --max-frequency, which offers more queries than either engine
  sends, so their rates are the engines' maximums.

The primary rate is the count of queries BIND9 received per second, from its
statistics channel; the engine's own counters are shown beside it. Schedule
lag is how late a query went out against its planned slot: digaas reports it
in GET /metrics as cumulative histogram bins (digaas/latency.py), and the
difference of two readings is the window's histogram. With two workers
each GET /metrics reaches one worker, so the script asks up to
METRICS_ATTEMPTS times until it has seen each worker, and reports the lag
of each worker it saw.

Run from the repository root with the Python that has the requirements:

    python bench/bench_poll.py            # full run, about 10 minutes
    python bench/bench_poll.py --quick    # smoke run, about 1.5 minutes

Posting slows down as the polls take the worker's time, so on a busy
machine a full run can take much longer.

Results print as tables and go to bench/results/poll-<UTC time>.json. All
traffic stays on 127.0.0.1.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import random
import re
import subprocess
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
# Serial asked by the load requests: above ZONE_SERIAL, and the load zones
# never change, so their condition is never met.
UNREACHED_SERIAL = 2000

# Poll timeout of the load requests: MAX_TIMEOUT_SECONDS of digaas_config.py.
LOAD_TIMEOUT_SECONDS = 3600

# A completed fidelity duration may exceed the end of the change by one
# frequency (the query that saw the change waited for its slot) plus this
# allowance for the schedule lag and the round trip, in seconds.
FIDELITY_ALLOWANCE_SECONDS = 0.020

# Seconds that dnsperf and the naive child get to exit after their run.
CHILD_EXIT_MARGIN_SECONDS = 30.0

# Threads that POST the fidelity requests.
FIDELITY_POST_THREADS = 8

# Timeout of one GET /metrics request. Under load the worker accepts one
# connection per turn of its event loop, so a response can take seconds.
METRICS_TIMEOUT_SECONDS = 60.0

# How many GET /metrics requests, each on a new connection, are sent to find
# every uwsgi worker.
METRICS_ATTEMPTS = 60

SERVICE_SETTINGS = {
    "MAX_IN_FLIGHT": 1_000_000,
    "MAX_QUERIES_PER_SECOND_PER_NAMESERVER": 1e6,
    "DNS_QUERY_TIMEOUT_SECONDS": 1,
    "LOG_LEVEL": "WARNING",
}

PHASES = ("dnsperf", "naive", "one", "two", "naive-max", "one-max")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Measure the digaas poll engine against a local BIND9, beside a naive"
                    " gevent engine and dnsperf. See the module docstring for the phases.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000 requests, 100 zones, 3 s warm-up, 6 s window,"
                             " 20 fidelity zones, 4 s of dnsperf")
    parser.add_argument("--requests", type=int, help="requests in flight in phases naive and one (default 20000)")
    parser.add_argument("--requests-two", type=int,
                        help="requests in flight in phase two, with 2 workers (default twice --requests)")
    parser.add_argument("--frequency", type=float, default=1.0, help="seconds between a request's queries (default 1)")
    parser.add_argument("--requests-max", type=int,
                        help="requests in flight in phases naive-max and one-max (default 8000)")
    parser.add_argument("--max-frequency", type=float, default=0.1,
                        help="frequency in seconds of phases naive-max and one-max, which offer more"
                             " queries than the engine can send (default 0.1, digaas's minimum)")
    parser.add_argument("--zones", type=int, help="zones the load requests are spread over (default 1000)")
    parser.add_argument("--warmup", type=float, help="seconds between the last POST and the window (default 5)")
    parser.add_argument("--duration", type=float, help="seconds of the measurement window (default 30)")
    parser.add_argument("--fidelity-zones", type=int,
                        help="requests, one zone each, of the timing-fidelity check (default 200; 0 skips it)")
    parser.add_argument("--fidelity-spread", type=float, default=10.0,
                        help="seconds over which the fidelity zones' serials are raised (default 10)")
    parser.add_argument("--dnsperf-seconds", type=float, help="seconds of the dnsperf phase (default 15)")
    parser.add_argument("--dnsperf-clients", type=int, default=8, help="dnsperf -c (default 8)")
    parser.add_argument("--dnsperf-threads", type=int, default=2, help="dnsperf -T (default 2)")
    parser.add_argument("--dnsperf-outstanding", type=int, default=1000, help="dnsperf -q (default 1000)")
    parser.add_argument("--post-threads", type=int, default=64,
                        help="threads that POST the requests, each on a new connection (default 64)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="phases to run, in this order (default all)")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait for a 1-minute load average below this before starting (default 1.5)")
    parser.add_argument("--max-load-wait", type=float, default=600.0,
                        help="seconds to wait at most for that load (default 600; 0 skips the wait)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fidelity change times (default 1)")
    args = parser.parse_args(argv)

    quick = args.quick
    defaults = {
        "requests": 2000 if quick else 20000,
        "requests_max": 2000 if quick else 8000,
        "zones": 100 if quick else 1000,
        "warmup": 3.0 if quick else 5.0,
        "duration": 6.0 if quick else 30.0,
        "fidelity_zones": 20 if quick else 200,
        "dnsperf_seconds": 4.0 if quick else 15.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.requests_two is None:
        args.requests_two = 2 * args.requests
    if quick:
        args.fidelity_spread = min(args.fidelity_spread, 4.0)
    return args


# Readings of counters.

def bind_reading(bind, named_pid):
    """Read BIND's query counters and named's CPU seconds, with the wall time."""
    counts = bind.query_counts()
    return {"time": time.time(), "queries": counts["total"], "udp": counts["udp"],
            "named_cpu_seconds": benchlib.cpu_seconds(named_pid)}


def bind_rate(first, second):
    seconds = second["time"] - first["time"]
    return {
        "seconds": round(seconds, 3),
        "queries": second["queries"] - first["queries"],
        "queries_per_second": round((second["queries"] - first["queries"]) / seconds, 1),
        "named_cpu_fraction": round((second["named_cpu_seconds"] - first["named_cpu_seconds"]) / seconds, 3),
    }


def read_metrics_by_worker(url, workers_expected):
    """GET /metrics on new connections until every worker has responded once.

    Returns {worker owner: (wall time, metrics)}. With several workers, the
    kernel hands each new connection to one of them, so some attempts
    repeat a worker already seen.
    """
    readings = {}
    for _ in range(METRICS_ATTEMPTS):
        response = requests.get(url + "/metrics", timeout=METRICS_TIMEOUT_SECONDS, headers=benchlib.CLOSE_CONNECTION)
        response.raise_for_status()
        metrics = response.json()
        readings.setdefault(metrics["worker"], (time.time(), metrics))
        if len(readings) >= workers_expected:
            break
    return readings


def lag_of_window(first_bins, second_bins):
    """Return the schedule lag percentiles of the queries between two cumulative bin readings."""
    counts = {}
    for index_text, count in second_bins.items():
        difference = count - first_bins.get(index_text, 0)
        if difference > 0:
            counts[int(index_text)] = difference
    return lag_summary(counts)


def lag_summary(counts):
    if not counts:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_bin_upper_edge_ms": None}
    highest = max(counts)
    return {
        "count": sum(counts.values()),
        "p50_ms": round(latency.percentile_seconds(counts, 0.50) * 1e3, 2),
        "p99_ms": round(latency.percentile_seconds(counts, 0.99) * 1e3, 2),
        # The bins hold no exact maximum, so the upper edge of the highest
        # bin used bounds it (at most about 9 % above the true value).
        "max_bin_upper_edge_ms": round(latency.EDGES[highest] * latency.BIN_RATIO * 1e3, 2),
    }


# Zones and request bodies.

def load_zone_names(count):
    return [f"z{index}.load.bench." for index in range(count)]


def fidelity_zone_names(count):
    return [f"f{index}.fidelity.bench." for index in range(count)]


def load_bodies(port, zones, count, frequency, timeout_seconds):
    now = time.time()
    return [{"nameserver": "127.0.0.1", "port": port, "zone_name": zones[index % len(zones)],
             "serial": UNREACHED_SERIAL, "condition": "serial_not_lower", "start_time": now,
             "timeout": timeout_seconds, "frequency": frequency}
            for index in range(count)]


# Phase: dnsperf.

def run_dnsperf(bind, named_pid, zones, args, workdir):
    query_file = pathlib.Path(workdir) / "dnsperf-queries.txt"
    query_file.write_text("".join(f"{zone} SOA\n" for zone in zones))
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(bind.port), "-d", str(query_file),
               "-l", f"{args.dnsperf_seconds:g}", "-c", str(args.dnsperf_clients),
               "-T", str(args.dnsperf_threads), "-q", str(args.dnsperf_outstanding)]
    print("dnsperf:", " ".join(command), flush=True)

    first = bind_reading(bind, named_pid)
    completed = subprocess.run(command, capture_output=True, text=True,
                               timeout=args.dnsperf_seconds + CHILD_EXIT_MARGIN_SECONDS, check=False)
    second = bind_reading(bind, named_pid)
    if completed.returncode != 0:
        raise RuntimeError(f"dnsperf exited with {completed.returncode}:\n{completed.stderr}{completed.stdout}")

    # dnsperf prints one [Timeout] line per lost query; the JSON keeps their
    # count and the rest of the output.
    lines = completed.stdout.splitlines()
    timeout_lines = sum(1 for line in lines if line.startswith("[Timeout]"))
    output = "\n".join(line for line in lines if not line.startswith("[Timeout]"))
    result = {"command": command, "output": output, "timeout_lines": timeout_lines}
    for key, pattern in (("queries_per_second", r"Queries per second:\s+([\d.]+)"),
                         ("queries_sent", r"Queries sent:\s+(\d+)"),
                         ("queries_completed", r"Queries completed:\s+(\d+)"),
                         ("queries_lost", r"Queries lost:\s+(\d+)"),
                         ("run_seconds", r"Run time \(s\):\s+([\d.]+)"),
                         ("average_latency_seconds", r"Average Latency \(s\):\s+([\d.]+)")):
        match = re.search(pattern, output)
        result[key] = float(match.group(1)) if match else None

    # The readings bracket dnsperf's whole process, which also waits for its
    # last queries to time out, so BIND's count is divided by dnsperf's own
    # run time (the sending time) instead of by the time between readings.
    result["bind"] = bind_rate(first, second)
    if result["run_seconds"]:
        result["bind"]["seconds"] = result["run_seconds"]
        result["bind"]["queries_per_second"] = round(result["bind"]["queries"] / result["run_seconds"], 1)
        result["bind"]["named_cpu_fraction"] = round(
            (second["named_cpu_seconds"] - first["named_cpu_seconds"]) / result["run_seconds"], 3)
    return result


# Phase: naive engine.

def run_naive(bind, named_pid, zones, frequency, args, workdir, request_count=None):
    request_count = request_count or args.requests
    zones_file = pathlib.Path(workdir) / "naive-zones.txt"
    zones_file.write_text("\n".join(zones) + "\n")
    command = [sys.executable, str(pathlib.Path(__file__).resolve().parent / "naive_poller.py"),
               "--port", str(bind.port), "--zones-file", str(zones_file),
               "--requests", str(request_count), "--frequency", f"{frequency:g}",
               "--warmup", f"{args.warmup:g}", "--duration", f"{args.duration:g}"]
    print("naive:", " ".join(command), flush=True)

    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        start_line = child.stdout.readline()
        if not start_line.startswith("START "):
            raise RuntimeError(f"naive_poller.py printed {start_line!r} instead of START <time>")
        start = float(start_line.split()[1])

        time.sleep(max(0.0, start + args.warmup - time.time()))
        first = bind_reading(bind, named_pid)
        child_cpu_first = benchlib.cpu_seconds(child.pid)
        time.sleep(max(0.0, start + args.warmup + args.duration - time.time()))
        second = bind_reading(bind, named_pid)
        child_cpu_second = benchlib.cpu_seconds(child.pid)

        output, _ = child.communicate(timeout=CHILD_EXIT_MARGIN_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"naive_poller.py exited with {child.returncode}")

    report = json.loads(output.strip().splitlines()[-1])
    window = report["window_end"] - report["window_start"]
    counts = {int(index): count for index, count in report["lag_bins"].items()}
    lag = lag_summary(counts)
    lag["max_ms"] = None if report["lag_max_seconds"] is None else round(report["lag_max_seconds"] * 1e3, 1)
    bind_part = bind_rate(first, second)
    return {
        "command": command,
        "requests": request_count,
        "frequency": frequency,
        "bind": bind_part,
        "engine_queries_per_second": round(report["queries_sent"] / window, 1),
        "engine_cpu_fraction": round((child_cpu_second - child_cpu_first) / bind_part["seconds"], 3),
        "timeouts": report["timeouts"],
        "errors": report["errors"],
        "lag": lag,
    }


# Phases: the digaas service.

def run_service(bind, named_pid, zones, fidelity_zones, processes, request_count, frequency, args, workdir,
                result):
    """Run one digaas phase, filling result as it goes so that a stopped run keeps what it measured."""
    label = f"{processes} process{'es' if processes > 1 else ''}, frequency {frequency:g} s"
    settings = dict(SERVICE_SETTINGS, PROCESSES=processes)
    service_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"service-{processes}-", dir=workdir))
    service = LocalService(service_dir, settings=settings).start()
    result.update(processes=processes, requests=request_count, frequency=frequency, settings=settings)
    try:
        workers = benchlib.uwsgi_worker_pids(service.process.pid, processes)

        # The load must stay in flight through posting, which slows down as
        # the polls take the worker's time, warm-up, window and the fidelity
        # check, so it gets the longest timeout digaas accepts by default.
        # The service is stopped long before it.
        bodies = load_bodies(bind.port, zones, request_count, frequency, LOAD_TIMEOUT_SECONDS)
        print(f"{label}: posting {request_count} requests", flush=True)
        ids, statuses, post_seconds = benchlib.post_requests(service.url, bodies, args.post_threads)
        result["post"] = {"seconds": round(post_seconds, 2), "statuses": statuses,
                          "requests_per_second": round(request_count / post_seconds, 1)}
        accepted = sum(1 for request_id in ids if request_id is not None)
        print(f"{label}: {accepted} of {request_count} accepted in {post_seconds:.1f} s"
              f" (statuses {statuses})", flush=True)

        time.sleep(args.warmup)
        first_metrics = read_metrics_by_worker(service.url, processes)
        first_bind = bind_reading(bind, named_pid)
        first_cpu = {pid: benchlib.cpu_seconds(pid) for pid in workers}
        print(f"{label}: measuring for {args.duration:g} s", flush=True)
        time.sleep(args.duration)
        second_bind = bind_reading(bind, named_pid)
        second_cpu = {pid: benchlib.cpu_seconds(pid) for pid in workers}
        second_metrics = read_metrics_by_worker(service.url, processes)

        result["bind"] = bind_rate(first_bind, second_bind)
        seconds = result["bind"]["seconds"]
        result["worker_cpu_fraction"] = {str(pid): round((second_cpu[pid] - first_cpu[pid]) / seconds, 3)
                                         for pid in workers}
        result["workers"] = {}
        for owner, (first_time, first) in first_metrics.items():
            if owner not in second_metrics:
                result["workers"][owner] = {"note": "answered the first GET /metrics only"}
                continue
            second_time, second = second_metrics[owner]
            result["workers"][owner] = {
                "in_flight": second["in_flight"],
                "queries_per_second": round((second["queries_sent"] - first["queries_sent"])
                                            / (second_time - first_time), 1),
                "pending_results": second["pending_results"],
                "lag": lag_of_window(first["schedule_lag_bins"], second["schedule_lag_bins"]),
                "lag_max_since_start_ms": None if second["schedule_lag_seconds"]["max"] is None
                else round(second["schedule_lag_seconds"]["max"] * 1e3, 1),
            }
        seen_both = len(result["workers"]) == processes and all(
            "queries_per_second" in worker for worker in result["workers"].values())
        result["engine_queries_per_second"] = round(sum(
            worker["queries_per_second"] for worker in result["workers"].values()
            if "queries_per_second" in worker), 1) if seen_both else None

        if fidelity_zones:
            try:
                result["fidelity"] = check_fidelity(service, bind, fidelity_zones, args)
            except (RuntimeError, OSError, ValueError, KeyError, requests.RequestException) as error:
                print(f"fidelity check failed: {error!r}", flush=True)
                result["fidelity_error"] = repr(error)
    finally:
        stop_started = time.monotonic()
        try:
            service.stop()
            result["stop_seconds"] = round(time.monotonic() - stop_started, 1)
        except RuntimeError as error:
            result["stop_error"] = str(error).splitlines()[0]
    return result


def check_fidelity(service, bind, zones, args):
    """Raise each zone's serial at a recorded time and check each duration against it.

    A request waits for serial ZONE_SERIAL + 1 on its own zone. The zone
    serves the new serial from some moment inside [t_before, t_after] of its
    set_serial() call, so the first answer that shows it arrives after
    t_before, and at most one frequency (its next slot) plus the lag and the
    round trip after t_after.
    """
    frequency = args.frequency
    start_time = time.time()
    bodies = [{"nameserver": "127.0.0.1", "port": bind.port, "zone_name": zone,
               "serial": ZONE_SERIAL + 1, "condition": "serial_not_lower", "start_time": start_time,
               "timeout": args.fidelity_spread + 60, "frequency": frequency}
              for zone in zones]
    print(f"fidelity: posting {len(zones)} requests, then raising their serials"
          f" over {args.fidelity_spread:g} s", flush=True)
    # Few threads: under load the worker accepts one connection per turn of
    # its event loop, and a long queue of connections makes POSTs time out.
    ids, statuses, _ = benchlib.post_requests(service.url, bodies, FIDELITY_POST_THREADS)
    zones_posted = [zone for zone, request_id in zip(zones, ids) if request_id is not None]
    ids = [request_id for request_id in ids if request_id is not None]

    # Every request receives the old serial at least once before its change.
    time.sleep(frequency + 0.5)
    generator = random.Random(args.seed)
    changes_start = time.time()
    planned = sorted(changes_start + generator.uniform(0, args.fidelity_spread) for _ in zones_posted)
    changes = []
    for zone, planned_time in zip(zones_posted, planned):
        time.sleep(max(0.0, planned_time - time.time()))
        t_before = time.time()
        bind.set_serial(zone, ZONE_SERIAL + 1)
        t_after = time.time()
        changes.append((t_before, t_after))

    records = wait_for_records(service, ids, deadline=time.monotonic() + frequency + 30)
    result = summarize_fidelity(records, changes, start_time, frequency)
    result["post_statuses"] = statuses
    return result


def wait_for_records(service, ids, deadline):
    """GET each request until it leaves ACCEPTED or the deadline passes; return the records.

    The GETs run FIDELITY_POST_THREADS at a time, because under load each
    one waits for the worker to accept its connection.
    """
    records = {}

    def fetch(request_id):
        if time.monotonic() > deadline:
            return
        record = requests.get(f"{service.url}/requests/{request_id}", timeout=METRICS_TIMEOUT_SECONDS,
                              headers=benchlib.CLOSE_CONNECTION).json()
        if record["status"] != "ACCEPTED":
            records[request_id] = record

    with concurrent.futures.ThreadPoolExecutor(max_workers=FIDELITY_POST_THREADS) as executor:
        while True:
            pending = [request_id for request_id in ids if request_id not in records]
            list(executor.map(fetch, pending))
            if len(records) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return [records.get(request_id) for request_id in ids]


def summarize_fidelity(records, changes, start_time, frequency):
    inside = 0
    offsets = []
    outside = []
    not_completed = []
    for record, (t_before, t_after) in zip(records, changes):
        if record is None or record["status"] != "COMPLETED":
            not_completed.append({"zone": None if record is None else record["zone_name"],
                                  "status": None if record is None else record["status"],
                                  "error": None if record is None else record["error"]})
            continue
        duration = record["duration"]
        lower = t_before - start_time
        upper = t_after - start_time + frequency + FIDELITY_ALLOWANCE_SECONDS
        offsets.append(duration - (t_after - start_time))
        if lower <= duration <= upper:
            inside += 1
        else:
            outside.append({"zone": record["zone_name"], "duration": round(duration, 4),
                            "lower": round(lower, 4), "upper": round(upper, 4),
                            "queries": record["queries"]})

    offsets.sort()
    widths = sorted(t_after - t_before for t_before, t_after in changes)
    return {
        "requests": len(records),
        "completed": len(offsets),
        "inside": inside,
        "outside": outside,
        "not_completed": not_completed,
        "offset_after_change_ms": {
            name: None if offsets == [] else round(benchlib.percentile(offsets, fraction) * 1e3, 1)
            for name, fraction in (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        "change_call_ms": {"p50": round(benchlib.percentile(widths, 0.5) * 1e3, 1),
                           "max": round(widths[-1] * 1e3, 1)},
    }


# Output.

def print_tables(result):
    rows = []
    for name, phase in result["phases"].items():
        rows.extend(phase_rows(name, phase))
    print()
    print(benchlib.format_table(
        ["phase", "engine", "in flight", "freq s", "BIND q/s", "engine q/s", "lag p50 ms", "lag p99 ms",
         "lag max ms", "named CPU", "engine CPU"], rows))
    print("CPU columns: CPU seconds per second of the window, 1.00 is one core. The digaas lag"
          " max is the upper edge of the highest histogram bin; the naive one is exact.")

    print()
    print(benchlib.format_table(["ratio of BIND q/s", "value"],
                                [[name, value] for name, value in result["ratios"].items()]))

    one = result["phases"].get("one", {})
    if "fidelity_error" in one:
        print(f"\ntiming fidelity: failed: {one['fidelity_error']}")
    fidelity = one.get("fidelity")
    if fidelity:
        offsets = fidelity["offset_after_change_ms"]
        print()
        print(f"timing fidelity: {fidelity['post_statuses']} for the POSTs;"
              f" {fidelity['inside']} of {fidelity['requests']} durations inside"
              f" [change start, change end + frequency + {FIDELITY_ALLOWANCE_SECONDS * 1e3:.0f} ms];"
              f" {fidelity['completed']} completed")
        print("duration minus change end, ms: " + ", ".join(f"{name} {value}" for name, value in offsets.items()))
        print(f"set_serial call, ms: p50 {fidelity['change_call_ms']['p50']},"
              f" max {fidelity['change_call_ms']['max']}")
        for entry in fidelity["outside"]:
            print("outside:", entry)
        for entry in fidelity["not_completed"]:
            print("not completed:", entry)


def phase_rows(name, phase):
    """Return the table rows of one phase: one row, or one per digaas worker."""
    if "error" in phase:
        return [[name, "failed, see the JSON file"] + ["-"] * 9]
    if name == "dnsperf":
        return [[name, "dnsperf", "-", "-", phase["bind"]["queries_per_second"], phase["queries_per_second"],
                 "-", "-", "-", phase["bind"]["named_cpu_fraction"], "-"]]
    if name.startswith("naive"):
        lag = phase["lag"]
        return [[name, "naive gevent", phase["requests"], phase["frequency"], phase["bind"]["queries_per_second"],
                 phase["engine_queries_per_second"], lag["p50_ms"], lag["p99_ms"], lag["max_ms"],
                 phase["bind"]["named_cpu_fraction"], phase["engine_cpu_fraction"]]]

    rows = []
    cpu = "+".join(f"{value:.2f}" for value in phase["worker_cpu_fraction"].values())
    for index, (owner, worker) in enumerate(sorted(phase["workers"].items())):
        lag = worker.get("lag", {})
        first = index == 0
        rows.append([name if first else "", f"digaas worker {owner.rsplit(':', 1)[-1]}",
                     worker.get("in_flight"), phase["frequency"] if first else "",
                     phase["bind"]["queries_per_second"] if first else "",
                     worker.get("queries_per_second"), lag.get("p50_ms"), lag.get("p99_ms"),
                     lag.get("max_bin_upper_edge_ms"),
                     phase["bind"]["named_cpu_fraction"] if first else "", cpu if first else ""])
    return rows


def compute_ratios(phases):
    def bind_qps(name):
        return phases.get(name, {}).get("bind", {}).get("queries_per_second")

    return {
        "one / naive (same frequency)": benchlib.ratio(bind_qps("one"), bind_qps("naive")),
        "one-max / naive-max (at --max-frequency)": benchlib.ratio(bind_qps("one-max"), bind_qps("naive-max")),
        "one / dnsperf": benchlib.ratio(bind_qps("one"), bind_qps("dnsperf")),
        "one-max / dnsperf": benchlib.ratio(bind_qps("one-max"), bind_qps("dnsperf")),
        "two / one (two workers, twice the requests)": benchlib.ratio(bind_qps("two"), bind_qps("one")),
    }


def run_phase(phase, bind, named_pid, zones, fidelity_zones, args, workdir, result):
    if phase == "dnsperf":
        return run_dnsperf(bind, named_pid, zones, args, workdir)
    if phase == "naive":
        return run_naive(bind, named_pid, zones, args.frequency, args, workdir)
    if phase == "naive-max":
        return run_naive(bind, named_pid, zones, args.max_frequency, args, workdir, args.requests_max)
    if phase == "one":
        return run_service(bind, named_pid, zones, fidelity_zones, 1, args.requests, args.frequency,
                           args, workdir, result)
    if phase == "one-max":
        return run_service(bind, named_pid, zones, [], 1, args.requests_max, args.max_frequency, args, workdir,
                           result)
    if phase == "two":
        return run_service(bind, named_pid, zones, [], 2, args.requests_two, args.frequency, args, workdir,
                           result)
    raise ValueError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")


def main(argv=None):
    args = parse_arguments(argv)
    benchlib.exit_on_sigterm()
    result = benchlib.run_header("poll")
    result["arguments"] = vars(args)
    if args.max_load_wait > 0:
        result["load"] = benchlib.wait_for_quiet_machine(args.max_load, args.max_load_wait)
    result["phases"] = {}

    zones = load_zone_names(args.zones)
    fidelity_zones = fidelity_zone_names(args.fidelity_zones)
    # The file is rewritten after every phase, so a run that is stopped
    # keeps the phases it finished.
    path = benchlib.results_path("poll")
    try:
        run_phases(args, result, zones, fidelity_zones, path)
    except SystemExit as stop:
        result["stopped"] = str(stop)
        benchlib.write_results("poll", result, path)
        raise

    result["ratios"] = compute_ratios(result["phases"])
    print_tables(result)
    benchlib.write_results("poll", result, path)
    print(f"\nresults written to {path}")


def run_phases(args, result, zones, fidelity_zones, path):
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as workdir:
        with LocalBind(os.path.join(workdir, "bind"), listen_ipv6=False) as bind:
            print(f"BIND9 on 127.0.0.1 port {bind.port}: adding {len(zones) + len(fidelity_zones)} zones",
                  flush=True)
            benchlib.add_zones(bind, zones + fidelity_zones, ZONE_SERIAL)
            named_pid = int((bind.workdir / "named.pid").read_text())

            for phase in args.phases:
                result["load_average_before_" + phase] = benchlib.load_average()
                try:
                    result["phases"][phase] = {}
                    result["phases"][phase] = run_phase(phase, bind, named_pid, zones, fidelity_zones,
                                                        args, workdir, result["phases"][phase])
                except (RuntimeError, OSError, ValueError, KeyError, requests.RequestException) as error:
                    # The other phases still run, and the error goes into the results.
                    print(f"phase {phase} failed: {error!r}", flush=True)
                    result["phases"][phase] = {"error": repr(error)}
                benchlib.write_results("poll", result, path)
            result["load_average_at_end"] = benchlib.load_average()


if __name__ == "__main__":
    main()
