"""Time the analysis endpoints of a real digaas service over sqlite and Redis.

For each storage and each size N, the script starts a digaas service (uwsgi,
via LocalService) on a free loopback port, and for the redis storage a
redis-server too. It fills the storage with N finished poll requests spread
over one hour, and then measures:

- through HTTP: GET /stats, GET /plots/{kind}.png for every kind, and
  GET /requests?format=csv and format=json, each over the whole hour;
- in this process, without HTTP or a child process: the same computation
  (offload.run_job, or the export generators over storage.iter_requests),
  so that the ratio of the two shows what the offload path adds;
- the phases of that computation (reading the columns, reading the latency
  histograms, summarizing, rendering), to show what dominates;
- one direct run of `python -m digaas.offload` per job, for the child's peak
  RSS from os.wait4, and the RSS of the uwsgi worker from /proc.

Each measurement is repeated --repeats times, interleaved (HTTP, then in
process, operation by operation), and the table shows medians. Run it from
the repository root with the Python that has the requirements installed:

    python bench/bench_analysis.py --sizes 100000 1000000 --storages sqlite redis

The results also go to a JSON file (--out). No traffic leaves the loopback
interface; the nameserver addresses in the data are from TEST-NET-1 and are
never queried.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import pathlib
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))

import redis  # noqa: E402
import requests  # noqa: E402

import benchlib  # noqa: E402

import digaas_config  # noqa: E402
from digaas import export  # noqa: E402
from digaas import latency  # noqa: E402
from digaas import model  # noqa: E402
from digaas import offload  # noqa: E402
from digaas import plots  # noqa: E402
from digaas import stats  # noqa: E402
from digaas import storage  # noqa: E402
from digaas.localbind import free_port  # noqa: E402
from digaas.localservice import LocalService  # noqa: E402

# The hour of synthetic requests: 2026-01-01 00:00:00 to 01:00:00 UTC.
WINDOW_START = 1767225600
WINDOW_SECONDS = 3600
WINDOW_END = WINDOW_START + WINDOW_SECONDS

# TEST-NET-1 addresses (RFC 5737): stored as data, never queried.
NAMESERVERS = ("192.0.2.1", "192.0.2.2", "192.0.2.3")
CONDITIONS = (model.SERIAL_NOT_LOWER, model.ZONE_EXISTS, model.ZONE_REMOVED)
ERROR_FRACTION = 0.05
POLL_TIMEOUT_SECONDS = 30
POLL_FREQUENCY_SECONDS = 0.5
FIRST_SERIAL = 1418336471

# One latency histogram per nameserver and minute of the window, each of
# this many simulated queries.
LATENCY_QUERIES_PER_BUCKET = 1000

DATA_SEED = 20260101
INSERT_BATCH_ROWS = 10000
DOWNLOAD_CHUNK_BYTES = 1 << 20

REDIS_START_TIMEOUT_SECONDS = 10.0
REDIS_STOP_TIMEOUT_SECONDS = 30.0

# Settings of the service under test. Analysis jobs of a million rows must
# not hit the default timeout, and the log stays at warnings so that
# writing it costs nothing measurable.
SERVICE_SETTINGS = {"ANALYSIS_TIMEOUT_SECONDS": 3600.0, "LOG_LEVEL": "WARNING"}
HTTP_TIMEOUT_SECONDS = 3600.0

STATS_OPERATION = "stats"
PACKAGES = ("numpy", "matplotlib", "falcon", "gevent", "uWSGI", "redis", "requests",
            "dnspython", "pillow")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Time GET /stats, /plots/{kind}.png and /requests export of a real"
                    " digaas service over sqlite and Redis, against the same work done"
                    " in process.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100000, 1000000],
                        metavar="N", help="stored requests per run (default: 100000 1000000)")
    parser.add_argument("--storages", nargs="+", choices=("sqlite", "redis"),
                        default=["sqlite", "redis"], help="storages to run (default: both)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repetitions of each measurement; the table shows"
                             " their median (default: 3)")
    parser.add_argument("--out", type=pathlib.Path,
                        help="JSON result file (default:"
                             " bench/results/analysis-<UTC date and time>.json)")
    parser.add_argument("--workdir", type=pathlib.Path,
                        help="directory for the sqlite files, redis-server and uwsgi logs;"
                             " default: a temporary directory, removed at the end")
    arguments = parser.parse_args(argv)
    if any(size < 1 for size in arguments.sizes):
        parser.error("--sizes must be positive integers")
    if arguments.repeats < 1:
        parser.error("--repeats must be at least 1")
    return arguments


# --- synthetic data -------------------------------------------------------

def synthetic_requests(count, seed=DATA_SEED):
    """Yield count finished PollRequests spread evenly over the window.

    About ERROR_FRACTION of them end ERROR after the poll timeout, the rest
    are COMPLETED with a log-normal duration (median 2 s). Nameservers and
    conditions rotate so that each of the 9 combinations gets a ninth.
    """
    generator = random.Random(seed)
    slot_seconds = WINDOW_SECONDS / count

    for index in range(count):
        start_time = WINDOW_START + (index + generator.random()) * slot_seconds
        condition = CONDITIONS[(index // len(NAMESERVERS)) % len(CONDITIONS)]
        accepted_at = start_time + generator.uniform(0.001, 0.05)
        serial = FIRST_SERIAL + index if condition == model.SERIAL_NOT_LOWER else None
        removal = condition == model.ZONE_REMOVED

        request = model.PollRequest(
            id=str(uuid.UUID(int=generator.getrandbits(128), version=4)),
            nameserver=NAMESERVERS[index % len(NAMESERVERS)],
            zone_name=f"z{index}.bench.test.", start_time=start_time,
            timeout=POLL_TIMEOUT_SECONDS, frequency=POLL_FREQUENCY_SECONDS,
            condition=condition, serial=serial, accepted_at=accepted_at)

        if generator.random() < ERROR_FRACTION:
            queries = int(POLL_TIMEOUT_SECONDS / POLL_FREQUENCY_SECONDS)
            request.status = model.ERROR
            request.queries = queries
            request.last_miss_at = accepted_at + POLL_TIMEOUT_SECONDS - generator.random() / 2
            request.last_rcode = "NOERROR"
            request.last_serial = None if removal else FIRST_SERIAL - 1
            request.error = (f"timed out after {POLL_TIMEOUT_SECONDS} s: {queries} queries,"
                             f" last rcode NOERROR")
        else:
            duration = generator.lognormvariate(math.log(2.0), 0.6)
            request.status = model.COMPLETED
            request.duration = duration
            request.completed_at = start_time + duration
            request.queries = max(1, math.ceil((start_time + duration - accepted_at)
                                               / POLL_FREQUENCY_SECONDS))
            if request.queries > 1:
                request.last_miss_at = request.completed_at - generator.uniform(
                    0.01, POLL_FREQUENCY_SECONDS)
            request.last_rcode = "REFUSED" if removal else "NOERROR"
            request.last_serial = None if removal else (serial or FIRST_SERIAL)

        yield request


def synthetic_histograms(seed=DATA_SEED):
    """Return a latency.Histogram per nameserver and minute of the window."""
    generator = random.Random(seed)
    histograms = []
    for bucket_start in range(WINDOW_START, WINDOW_END, latency.BUCKET_SECONDS):
        for position, nameserver in enumerate(NAMESERVERS):
            histogram = latency.Histogram(nameserver, bucket_start)
            median_seconds = 0.002 * (position + 1)
            for _ in range(LATENCY_QUERIES_PER_BUCKET):
                histogram.add(generator.lognormvariate(math.log(median_seconds), 0.5))
            histogram.timeouts = generator.randrange(4)
            histograms.append(histogram)
    return histograms


def batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def field_values(request):
    """Return the fields of a request in model.FIELD_NAMES order.

    Every field is a str, number or None, so this equals the values of
    request.to_dict() without the deep copy that dataclasses.asdict makes.
    """
    return [getattr(request, name) for name in model.FIELD_NAMES]


class EndsRecorder:
    """Pass items through and keep the first and the last, for a check after the fill."""

    def __init__(self, items):
        self._items = items
        self.first = None
        self.last = None

    def __iter__(self):
        for item in self._items:
            if self.first is None:
                self.first = item
            self.last = item
            yield item


def fill_sqlite(path, requests_to_store):
    """Insert requests into the service's sqlite file in one transaction."""
    columns = ", ".join(model.FIELD_NAMES)
    placeholders = ", ".join("?" for _ in model.FIELD_NAMES)
    statement = f"INSERT INTO requests ({columns}) VALUES ({placeholders})"

    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        connection.execute("BEGIN")
        for batch in batches(requests_to_store, INSERT_BATCH_ROWS):
            connection.executemany(statement, [field_values(request) for request in batch])
        connection.execute("COMMIT")
        # Move the rows from the WAL into the database file, where a
        # long-running service's automatic checkpoints would have put them.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def fill_redis(backend, url, requests_to_store):
    """Write requests as RedisStorage.create does, in pipelined batches.

    The key names come from the storage's own key helpers, and each field is
    the JSON text of its value, as in RedisStorage.create.
    """
    client = redis.Redis.from_url(url)
    try:
        for batch in batches(requests_to_store, INSERT_BATCH_ROWS):
            pipeline = client.pipeline(transaction=False)
            for request in batch:
                fields = {name: json.dumps(value)
                          for name, value in zip(model.FIELD_NAMES, field_values(request))}
                pipeline.hset(backend._request_key(request.id), mapping=fields)
            pipeline.zadd(backend._start_time_key(),
                          {request.id: request.start_time for request in batch})
            pipeline.execute()
    finally:
        client.close()


def check_stored(backend, service, examples):
    """Check that the storage and the service read back generated requests exactly.

    The row counts are checked later, on the output of every timed request.
    """
    for expected in examples:
        stored = backend.get(expected.id)
        if stored != expected:
            raise RuntimeError(f"storage returned {stored} for generated request {expected}")
        response = service.get(expected.id)
        if response.status_code != 200:
            raise RuntimeError(f"GET /requests/{expected.id} returned {response.status_code}:"
                               f" {response.text[:1000]}")
        served = response.json()
        unknown = sorted(set(served) - set(model.FIELD_NAMES))
        if unknown:
            raise RuntimeError(f"GET /requests/{expected.id} returned fields {unknown} that this"
                               f" process's digaas.model lacks: the digaas source changed"
                               f" after this script imported it")
        differences = {name: (served.get(name), value)
                       for name, value in expected.to_dict().items()
                       if served.get(name) != value}
        if differences:
            raise RuntimeError(f"GET /requests/{expected.id} differs from the generated"
                               f" request, as field: (served, generated): {differences}")


# --- processes ------------------------------------------------------------

class RedisServer:
    """A redis-server on a free loopback port, without persistence, in its own directory."""

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = self.directory / "redis.log"
        self.process = None

    def __enter__(self):
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server not found in PATH; install it"
                             " (on Debian: apt-get install redis-server) or pass"
                             " --storages sqlite")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [executable, "--bind", "127.0.0.1", "--port", str(self.port),
                   "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                   "--logfile", str(self.log_path), "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with status"
                                       f" {self.process.returncode}; log {self.log_path}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"redis-server at {self.url} did not respond to PING"
                                       f" within {REDIS_START_TIMEOUT_SECONDS} s;"
                                       f" log {self.log_path}")
                time.sleep(0.05)
        finally:
            client.close()

    def __exit__(self, *exc_info):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=REDIS_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def used_memory_bytes(self):
        return self._info("memory")["used_memory"]

    def reset_command_stats(self):
        client = redis.Redis.from_url(self.url)
        try:
            client.config_resetstat()
        finally:
            client.close()

    def command_stats(self):
        """Return calls and server-side seconds per command since the last reset."""
        return {name.removeprefix("cmdstat_"): {"calls": values["calls"],
                                                 "seconds": values["usec"] / 1e6}
                for name, values in self._info("commandstats").items()}

    def _info(self, section):
        client = redis.Redis.from_url(self.url)
        try:
            return client.info(section)
        finally:
            client.close()


def memory_kb(pid):
    """Return VmRSS and VmHWM (peak RSS) of a process in kB, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return {"rss_kb": values.get("VmRSS"), "peak_rss_kb": values.get("VmHWM")}


def child_pids(pid):
    pids = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        pids += [int(text) for text in (task / "children").read_text().split()]
    return pids


def server_memory(service):
    """Return the memory of the uwsgi master and its workers.

    LocalService runs `digaas serve`, which execs uwsgi, so the process it
    started is the uwsgi master and the workers are its children.
    """
    master = service.process.pid
    return {"master": memory_kb(master),
            "workers": [memory_kb(pid) for pid in child_pids(master)]}


# Runs the command in argv[2:] and writes its resource usage as JSON to the
# file argv[1]. The bench process starts the offload child through this small
# process because, at exec, Linux carries the peak RSS of the replaced memory
# image into the new program's ru_maxrss (exec_mmap in fs/exec.c). A child
# forked straight from this process, which has a million rows in memory after
# the in-process runs, would report this process's peak as its own. Checked
# on Linux 6.18 with a child that allocates 300 MB under a 500 MB parent: a
# direct os.wait4 reported 524 MB, this wrapper and `/usr/bin/time -f %M`
# both 318 MB.
RUSAGE_WRAPPER = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
process.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"max_rss_kb": usage.ru_maxrss, "user_seconds": usage.ru_utime,
               "system_seconds": usage.ru_stime}, out)
sys.exit(process.returncode)
"""


def run_offload_child(job, environment):
    """Run `python -m digaas.offload` on one job; return its wall time, CPU and peak RSS."""
    with tempfile.TemporaryDirectory() as directory:
        usage_path = pathlib.Path(directory) / "usage.json"
        errors_path = pathlib.Path(directory) / "stderr"
        command = [sys.executable, "-c", RUSAGE_WRAPPER, str(usage_path),
                   sys.executable, "-m", "digaas.offload"]

        with open(errors_path, "wb") as errors:
            started = time.perf_counter()
            completed = subprocess.run(command, env=environment, input=json.dumps(job).encode(),
                                       stdout=subprocess.PIPE, stderr=errors, check=False)
            seconds = time.perf_counter() - started

        if completed.returncode != 0:
            raise RuntimeError(f"python -m digaas.offload exited with {completed.returncode}"
                               f" on job {job}:\n{errors_path.read_text(errors='replace')}")
        usage = json.loads(usage_path.read_text())

    return dict(usage, wall_seconds=seconds, output_bytes=len(completed.stdout))


# --- measurements ---------------------------------------------------------

def http_get(url, params, expected_type, keep_body=False):
    """GET a URL, reading the body in chunks; return seconds, bytes and lines (and the body).

    Raises RuntimeError unless the status is 200 with the expected content type.
    """
    started = time.perf_counter()
    first_byte_seconds = None
    size = 0
    lines = 0
    body = []
    with requests.get(url, params=params, stream=True, timeout=HTTP_TIMEOUT_SECONDS) as response:
        if response.status_code != 200:
            raise RuntimeError(f"GET {response.url} returned {response.status_code}:"
                               f" {response.text[:1000]}")
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith(expected_type):
            raise RuntimeError(f"GET {response.url} returned Content-Type {content_type!r},"
                               f" expected {expected_type}")
        for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
            if first_byte_seconds is None:
                first_byte_seconds = time.perf_counter() - started
            size += len(chunk)
            lines += chunk.count(b"\n")
            if keep_body:
                body.append(chunk)
    result = {"seconds": time.perf_counter() - started,
              "first_byte_seconds": first_byte_seconds, "bytes": size, "lines": lines}
    if keep_body:
        result["body"] = b"".join(body)
    return result


def job_for(operation):
    job = {"start": WINDOW_START, "end": WINDOW_END, "nameserver": None, "condition": None}
    if operation == STATS_OPERATION:
        return dict(job, kind="stats")
    return dict(job, kind="plot", plot=operation)


def measure_http(service, operation):
    window = {"start": WINDOW_START, "end": WINDOW_END}
    if operation == STATS_OPERATION:
        return http_get(f"{service.url}/stats", window, "application/json", keep_body=True)
    if operation in plots.KINDS:
        return http_get(f"{service.url}/plots/{operation}.png", window, "image/png")
    export_format = operation.removeprefix("export_")
    expected_type = "text/csv" if export_format == "csv" else "application/json"
    return http_get(f"{service.url}/requests", dict(window, format=export_format),
                    expected_type)


def measure_in_process(backend, operation):
    """Do the work of one operation in this process; return seconds and bytes produced."""
    started = time.perf_counter()
    if operation.startswith("export_"):
        query = storage.RequestQuery(start=WINDOW_START, end=WINDOW_END)
        chunks = (export.csv_chunks if operation == "export_csv" else export.json_chunks)(
            backend.iter_requests(query))
        size = sum(len(chunk) for chunk in chunks)
    else:
        size = len(offload.run_job(job_for(operation), backend))
    return {"seconds": time.perf_counter() - started, "bytes": size}


def measure_phases(backend):
    """Time the steps of offload.run_job separately, in this process."""
    query = storage.RequestQuery(start=WINDOW_START, end=WINDOW_END)
    phases = {}

    started = time.perf_counter()
    rows = list(backend.iter_columns(query, offload.COLUMNS))
    phases["read_rows"] = time.perf_counter() - started

    started = time.perf_counter()
    columns = stats.Columns.from_rows(rows)
    phases["rows_to_columns"] = time.perf_counter() - started
    del rows

    started = time.perf_counter()
    histograms = list(backend.iter_latency(latency.bucket_of(WINDOW_START), WINDOW_END))
    phases["read_latency"] = time.perf_counter() - started

    started = time.perf_counter()
    summary = stats.summarize(columns, WINDOW_START, WINDOW_END)
    summary["latency"] = stats.latency_summary(histograms)
    json.dumps(summary)
    phases["summarize"] = time.perf_counter() - started

    for kind in plots.KINDS:
        started = time.perf_counter()
        plots.render(kind, columns, histograms, WINDOW_START, WINDOW_END)
        phases[f"render_{kind}"] = time.perf_counter() - started
    return phases


def check_results(operation, result, count):
    """Raise RuntimeError when an HTTP result does not cover the count stored requests."""
    if operation == STATS_OPERATION:
        total = json.loads(result.pop("body"))["overall"]["total"]
        if total != count:
            raise RuntimeError(f"GET /stats counted {total} requests, expected {count}")
    if operation == "export_csv" and result["lines"] != count + 1:
        raise RuntimeError(f"CSV export has {result['lines']} lines, expected {count + 1}")
    if operation == "export_json" and result["lines"] != count:
        raise RuntimeError(f"JSON export has {result['lines']} lines, expected {count}")


def warm_up(service, backend):
    """Run each job once on an empty window, through HTTP and in process.

    This loads numpy and matplotlib (and builds matplotlib's font cache on a
    first run) before any timing, and pulls the Python modules into the page cache.
    """
    empty = {"start": WINDOW_START - 10, "end": WINDOW_START - 5}
    for kind in plots.KINDS:
        http_get(f"{service.url}/plots/{kind}.png", empty, "image/png")
        offload.run_job(dict(job_for(kind), **empty), backend)
    http_get(f"{service.url}/stats", empty, "application/json")
    offload.run_job(dict(job_for(STATS_OPERATION), **empty), backend)


def summarize_samples(samples, key="seconds"):
    values = [sample[key] for sample in samples]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


OPERATIONS = (STATS_OPERATION, *plots.KINDS, "export_csv", "export_json")


def start_servers(stack, storage_name, run_dir):
    """Start redis-server (for redis) and the service; return them and the service's config."""
    redis_server = None
    if storage_name == "redis":
        redis_server = stack.enter_context(RedisServer(run_dir / "redis"))
    service = stack.enter_context(LocalService(
        run_dir, storage=storage_name, settings=SERVICE_SETTINGS,
        redis_url=redis_server.url if redis_server else None))

    environment = {f"DIGAAS_{name}": str(value) for name, value in SERVICE_SETTINGS.items()}
    environment["DIGAAS_STORAGE"] = storage_name
    environment["DIGAAS_SQLITE_PATH"] = str(service.sqlite_path)
    if redis_server:
        environment["DIGAAS_REDIS_URL"] = redis_server.url
    return service, redis_server, digaas_config.load(environment)


def fill_storage(service, redis_server, backend, count):
    """Store count synthetic requests and the latency histograms, then check them."""
    generated = EndsRecorder(synthetic_requests(count))
    if redis_server is None:
        fill_sqlite(service.sqlite_path, generated)
    else:
        fill_redis(backend, redis_server.url, generated)
    backend.add_latency(synthetic_histograms())
    check_stored(backend, service, (generated.first, generated.last))


def measure_repeats(label, service, backend, count, repeats):
    """Time every operation through HTTP and in process, interleaved, repeats times.

    Returns the samples per operation and the in-process phase samples.
    """
    samples = {operation: {"http": [], "in_process": []} for operation in OPERATIONS}
    phase_samples = []
    for repeat in range(repeats):
        for operation in OPERATIONS:
            print(f"{label}: repeat {repeat + 1}/{repeats}: {operation}", flush=True)
            http_result = measure_http(service, operation)
            check_results(operation, http_result, count)
            samples[operation]["http"].append(http_result)
            samples[operation]["in_process"].append(measure_in_process(backend, operation))
        phase_samples.append(measure_phases(backend))
    return samples, phase_samples


def operation_result(samples):
    http_samples = samples["http"]
    in_process_samples = samples["in_process"]
    result = {
        "http_seconds": summarize_samples(http_samples),
        "http_first_byte_seconds": summarize_samples(http_samples, "first_byte_seconds"),
        "in_process_seconds": summarize_samples(in_process_samples),
        "response_bytes": http_samples[0]["bytes"],
        "in_process_bytes": in_process_samples[0]["bytes"],
    }
    result["ratio"] = result["http_seconds"]["median"] / result["in_process_seconds"]["median"]
    return result


def run_one(storage_name, count, repeats, workdir):
    """Start the servers for one storage and size, fill them, and measure every operation."""
    label = f"{storage_name} {count}"
    run_dir = workdir / f"{storage_name}-{count}"
    run_dir.mkdir(parents=True)
    result = {"storage": storage_name, "requests": count}

    with contextlib.ExitStack() as stack:
        service, redis_server, config = start_servers(stack, storage_name, run_dir)
        backend = storage.open_storage(config)
        stack.callback(backend.close)
        result["server_memory_at_start"] = server_memory(service)

        print(f"{label}: filling", flush=True)
        started = time.perf_counter()
        fill_storage(service, redis_server, backend, count)
        result["fill_seconds"] = time.perf_counter() - started
        if redis_server is None:
            result["storage_bytes"] = service.sqlite_path.stat().st_size
        else:
            result["storage_bytes"] = redis_server.used_memory_bytes()
        result["server_memory_after_fill"] = server_memory(service)

        warm_up(service, backend)
        if redis_server:
            redis_server.reset_command_stats()
        result["load_average_before_measuring"] = os.getloadavg()
        samples, phase_samples = measure_repeats(label, service, backend, count, repeats)
        result["server_memory_after_http"] = server_memory(service)
        result["load_average_after_measuring"] = os.getloadavg()
        if redis_server:
            # Every timed read of the repeats above, HTTP and in process together.
            result["redis_command_stats"] = redis_server.command_stats()

        result["operations"] = {operation: operation_result(samples[operation])
                                for operation in OPERATIONS}
        result["phases_seconds"] = {
            name: summarize_samples([{"seconds": sample[name]} for sample in phase_samples])
            for name in phase_samples[0]}

        child_environment = offload.child_environment(config)
        for operation in (STATS_OPERATION, *plots.KINDS):
            print(f"{label}: direct offload child: {operation}", flush=True)
            result["operations"][operation]["child"] = run_offload_child(
                job_for(operation), child_environment)

    return result


# --- machine and report ---------------------------------------------------

def command_output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True,
                              cwd=REPOSITORY_ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        return f"unavailable: {error}"


# The files whose code the service, the offload child and this script run.
SOURCE_PATHS = ("digaas", "digaas_config.py", "uwsgi.ini")


def source_digest():
    """Return a SHA-256 of the files in SOURCE_PATHS, to detect edits during a run.

    The service and every offload child import the code when they start, and
    this script at its own start, so an edit during a run mixes versions.
    """
    digest = hashlib.sha256()
    for name in SOURCE_PATHS:
        path = REPOSITORY_ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(REPOSITORY_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def machine_description():
    """Return benchlib's machine description with sqlite's version and the state of SOURCE_PATHS."""
    description = benchlib.machine_description(packages=PACKAGES)
    description["sqlite"] = sqlite3.sqlite_version
    description["git_dirty"] = bool(command_output(["git", "status", "--porcelain", "--",
                                                    *SOURCE_PATHS]))
    return description


def format_table(results):
    header = (f"{'storage':<7} {'requests':>9} {'operation':<26} {'HTTP s':>8} {'spread':>13}"
              f" {'in-proc s':>9} {'ratio':>6} {'MB':>7} {'child RSS MiB':>13}")
    lines = [header, "-" * len(header)]
    for result in results:
        for operation, entry in result["operations"].items():
            http = entry["http_seconds"]
            child = entry.get("child")
            rss = f"{child['max_rss_kb'] / 1024:.0f}" if child else "-"
            lines.append(
                f"{result['storage']:<7} {result['requests']:>9} {operation:<26}"
                f" {http['median']:>8.3f} {http['min']:>6.2f}-{http['max']:<6.2f}"
                f" {entry['in_process_seconds']['median']:>9.3f} {entry['ratio']:>6.2f}"
                f" {entry['response_bytes'] / 1e6:>7.1f} {rss:>13}")
    return "\n".join(lines)


def format_phases(results):
    """Return per run: fill time, storage size, in-process phases and the worker's memory."""
    lines = []
    for result in results:
        phases = ", ".join(f"{name} {value['median']:.3f}"
                           for name, value in result["phases_seconds"].items())
        workers = ", ".join(
            f"RSS {worker['rss_kb'] / 1024:.0f} MiB, peak {worker['peak_rss_kb'] / 1024:.0f} MiB"
            for worker in result["server_memory_after_http"]["workers"])
        storage_megabytes = result["storage_bytes"] / 1e6
        lines += [
            f"{result['storage']} {result['requests']}:",
            f"  fill {result['fill_seconds']:.1f} s, storage {storage_megabytes:.0f} MB",
            f"  in-process phases, median s: {phases}",
            f"  uwsgi worker after the run: {workers}",
        ]
    return "\n".join(lines)


def raise_system_exit(signal_number, frame):
    raise SystemExit(128 + signal_number)


def main(argv=None):
    arguments = parse_arguments(argv)
    # Stop the servers on SIGTERM, and on SIGINT even when a shell started
    # this script in the background with SIGINT ignored.
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    started_at = datetime.datetime.now(datetime.timezone.utc)
    out = arguments.out or (REPOSITORY_ROOT / "bench" / "results"
                            / f"analysis-{started_at:%Y%m%dT%H%M%SZ}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    report = {
        "benchmark": "analysis",
        "started_at": started_at.isoformat(),
        "command": [sys.executable, *sys.argv],
        "machine": machine_description(),
        "service_settings": SERVICE_SETTINGS,
        "repeats": arguments.repeats,
        "window": {"start": WINDOW_START, "end": WINDOW_END},
        "load_average_at_start": os.getloadavg(),
        "source_sha256": source_digest(),
        "runs": [],
    }

    with contextlib.ExitStack() as stack:
        if arguments.workdir:
            workdir = arguments.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = pathlib.Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="digaas-bench-")))

        for storage_name in arguments.storages:
            for count in arguments.sizes:
                result = run_one(storage_name, count, arguments.repeats, workdir)
                result["source_changed"] = source_digest() != report["source_sha256"]
                if result["source_changed"]:
                    print(f"WARNING: the digaas source changed during the {storage_name}"
                          f" {count} run, so its HTTP and in-process numbers may come from"
                          f" different code; rerun from a checkout that nobody edits",
                          file=sys.stderr, flush=True)
                report["runs"].append(result)
                # Written after each run, so that a later failure keeps the results so far.
                report["load_average_at_end"] = os.getloadavg()
                out.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(format_table(report["runs"]))
    print()
    print(format_phases(report["runs"]))
    print(f"\nresults written to {out}")


if __name__ == "__main__":
    main()
