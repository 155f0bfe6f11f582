"""Helpers shared by bench_poll.py, bench_api.py and bench_memory.py.

They describe the machine, wait for a quiet machine, post poll requests in
bulk, read process counters from /proc, and print and save the results.
Nothing here sends traffic off the loopback interface.
"""

import concurrent.futures
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import signal
import subprocess
import sys
import threading
import time

import requests

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIRECTORY = REPOSITORY_ROOT / "bench" / "results"

PACKAGES = ("gevent", "greenlet", "dnspython", "falcon", "uWSGI", "redis", "requests")

# Seconds between two readings of the load average while waiting for a
# quiet machine.
LOAD_CHECK_INTERVAL_SECONDS = 15.0

# Timeout of one HTTP request sent by post_requests(), in seconds.
POST_TIMEOUT_SECONDS = 30.0

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

# uwsgi's http-socket (uwsgi.ini) closes the connection after every response
# without sending "Connection: close", so a client that keeps the connection
# for its next request, as a requests.Session does, sometimes gets
# ECONNRESET. The helpers here open a new connection for every request and
# send "Connection: close".
CLOSE_CONNECTION = {"Connection": "close"}


def command_output(command):
    """Return the first line of a command's output, or None if it cannot run."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (completed.stdout or completed.stderr).strip()
    return text.splitlines()[0] if text else None


def uwsgi_executable():
    """Return the uwsgi next to this Python (as `digaas serve` picks it), else "uwsgi"."""
    beside_python = pathlib.Path(sys.executable).parent / "uwsgi"
    return str(beside_python) if beside_python.is_file() else "uwsgi"


def machine_description(packages=PACKAGES):
    """Return the CPU, memory and software versions of this machine, for the results.

    packages names the Python distributions whose versions are listed.
    """
    cpu_model = None
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    memory_total_kib = None
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_total_kib = int(line.split()[1])

    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None

    return {
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_total_kib": memory_total_kib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "uwsgi": command_output([uwsgi_executable(), "--version"]),
        "named": command_output(["/usr/sbin/named", "-v"]),
        "redis_server": command_output(["redis-server", "--version"]),
        "wrk": command_output(["wrk", "--version"]),
        "dnsperf": _dnsperf_version(),
        "git_commit": command_output(["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"]),
        # The poll engine was being changed while these benchmarks ran, so the
        # results name the uncommitted files that were measured.
        "git_uncommitted_in_digaas": _uncommitted_files("digaas"),
        "digaas_source_sha256": source_digest(REPOSITORY_ROOT / "digaas"),
    }


def exit_on_sigterm():
    """Turn SIGTERM into SystemExit, so that the servers a benchmark started are stopped."""
    def raise_system_exit(signal_number, frame):
        raise SystemExit(f"stopped by signal {signal_number}")
    signal.signal(signal.SIGTERM, raise_system_exit)


def source_digest(directory):
    """Return the SHA-256 of the .py files under directory, to tell which code was measured."""
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(directory).rglob("*.py")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _dnsperf_version():
    output = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, check=False)
    for line in (output.stdout + output.stderr).splitlines():
        if line.startswith("Version"):
            return line.strip()
    return None


def _uncommitted_files(path):
    completed = subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "status", "--porcelain", "--", path],
                               capture_output=True, text=True, check=False)
    return [line[3:] for line in completed.stdout.splitlines()]


def load_average():
    """Return the 1, 5 and 15 minute load averages."""
    return list(os.getloadavg())


def wait_for_quiet_machine(max_load, max_wait_seconds):
    """Wait until the 1-minute load average is below max_load, at most max_wait_seconds.

    Returns a dict with the load averages at the start and at the end of the
    wait, the seconds waited, and whether the machine became quiet. The
    benchmark goes on either way, and the caller reports the load.
    """
    started = time.monotonic()
    first = load_average()
    current = first
    while current[0] >= max_load and time.monotonic() - started < max_wait_seconds:
        print(f"load average {current[0]:.2f} is not below {max_load}; waiting"
              f" (at most {max_wait_seconds - (time.monotonic() - started):.0f} s more)", flush=True)
        time.sleep(LOAD_CHECK_INTERVAL_SECONDS)
        current = load_average()
    return {"load_average_at_start": first, "load_average_after_wait": current,
            "waited_seconds": round(time.monotonic() - started, 1),
            "quiet": current[0] < max_load}


def cpu_seconds(pid):
    """Return the user plus system CPU seconds a process has used, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat_file:
        # The command name in brackets may contain spaces, so split after it.
        fields = stat_file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def rss_kib(pid):
    """Return a process's resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"process {pid} has no VmRSS line in /proc/{pid}/status")


def child_pids(pid):
    """Return the ids of the direct children of a process."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                fields = stat_file.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return sorted(children)


def uwsgi_worker_pids(master_pid, expected, timeout_seconds=10.0):
    """Return the pids of the uwsgi workers under master_pid once there are `expected` of them."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        workers = child_pids(master_pid)
        if len(workers) >= expected:
            return workers[:expected]
        if time.monotonic() > deadline:
            raise RuntimeError(f"uwsgi master {master_pid} has {len(workers)} children,"
                               f" expected {expected} workers")
        time.sleep(0.1)


def post_requests(url, bodies, threads):
    """POST every body to url + "/requests" from `threads` threads, a new connection each.

    Returns (ids, statuses, seconds): the ids of the accepted requests in
    the order of bodies (None where the POST failed), a dict of HTTP status
    (or exception name) to count, and the wall time of the whole posting.
    """
    ids = [None] * len(bodies)
    statuses = {}
    statuses_lock = threading.Lock()

    def post_one(index):
        try:
            response = requests.post(url + "/requests", json=bodies[index], timeout=POST_TIMEOUT_SECONDS,
                                    headers=CLOSE_CONNECTION)
            status = response.status_code
            if status == 202:
                ids[index] = response.json()["id"]
        except requests.RequestException as error:
            status = type(error).__name__
        with statuses_lock:
            statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as executor:
        # Consume the iterator so that an exception in post_one is raised here.
        list(executor.map(post_one, range(len(bodies))))
    return ids, statuses, time.monotonic() - started


def add_zones(bind, zone_names, serial, threads=8):
    """Add zones to a LocalBind with `threads` rndc addzone commands at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as executor:
        list(executor.map(lambda name: bind.add_zone(name, serial=serial), zone_names))


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of an ascending list, or None if it is empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]


def format_table(headers, rows):
    """Return rows as a text table with a header line; None cells print as "-"."""
    cells = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [max(len(header), *(len(row[column]) for row in cells)) if cells else len(header)
              for column, header in enumerate(headers)]

    def format_row(row):
        # Labels in the first column are left-aligned, numbers in the others right-aligned.
        return "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                         for column, (cell, width) in enumerate(zip(row, widths))).rstrip()

    lines = [format_row(headers), format_row(["-" * width for width in widths])]
    lines.extend(format_row(row) for row in cells)
    return "\n".join(lines)


def ratio(numerator, denominator):
    """Return numerator / denominator rounded to 3 places, or None when either is missing or 0."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def results_path(benchmark):
    """Return bench/results/BENCHMARK-<UTC time>.json, creating bench/results if needed."""
    RESULTS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIRECTORY / f"{benchmark}-{stamp}.json"


def write_results(benchmark, result, path=None):
    """Write result as JSON to path, by default a new results_path(benchmark); return the path."""
    if path is None:
        path = results_path(benchmark)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def run_header(benchmark):
    """Return the fields every result file starts with."""
    return {
        "benchmark": benchmark,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": [sys.executable, *sys.argv],
        "machine": machine_description(),
    }
