"""Measure POST /requests and GET /requests/{id} of digaas with wrk, beside a bare falcon app.

The script starts, on free loopback ports:

- a BIND9 (LocalBind) with one zone, the nameserver of every posted request;
- a redis-server without persistence;
- digaas on sqlite and digaas on Redis (LocalService, one uwsgi worker each);
- bench/echo_app.py, a falcon app that only echoes the POST body and returns
  a fixed record on GET ("echo"), and the same app waiting until the loop
  is idle before it answers ("echo-idle"). Each runs under uwsgi with the
  options of uwsgi.ini given on the command line: gevent with 10000 async
  cores, early monkey patching, one process, http-socket, lazy-apps,
  post-buffering 0 and disable-logging;
- with --split-polls, bench/split_polls.py on each storage ("split"): the
  digaas app with its polls in a child process of the worker, an
  experiment that measures what moving the polls out of the web worker
  gives on this machine.

Then wrk (`wrk -t2 -c64 -d15s --latency` with a Lua script) runs each
endpoint against each server in turn, for --rounds rounds. The script
prints requests per second, latency percentiles, errors and the CPU the
server used, the ratio of digaas to each echo app per endpoint and
storage, and the cores that each digaas POST would need at 0.80 of the
echo app's rate, at the CPU per POST it used.

A posted request polls the zone every second with a condition that is never
met and a timeout of 2 s, so each POST costs about two DNS queries and one
result write as well, and polls in flight stay bounded (about twice the
POST rate). GET /requests/{id} reads ids posted before the run.

    python bench/bench_api.py           # full run, about 5 minutes
    python bench/bench_api.py --quick   # smoke run, about 1 minute
    python bench/bench_api.py --split-polls   # also the split servers, about 7 minutes

Results print as a table and go to bench/results/api-<UTC time>.json.
"""

import argparse
import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time

import requests

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "bench"))
sys.path.insert(0, str(REPOSITORY_ROOT / "tests"))

import benchlib  # noqa: E402
import echo_app  # noqa: E402
import redisproc  # noqa: E402
from digaas.localbind import LocalBind, free_port  # noqa: E402
from digaas.localservice import LocalService  # noqa: E402

ZONE_NAME = "z0.api.bench."
ZONE_SERIAL = 1000
UNREACHED_SERIAL = 2000
POLL_TIMEOUT_SECONDS = 2
POLL_FREQUENCY_SECONDS = 1

# Requests posted before the runs, whose ids GET /requests/{id} cycles through.
GET_IDS = 200

# Seconds between a POST run and the next run, so that the polls it started
# (POLL_TIMEOUT_SECONDS each) are over.
SETTLE_SECONDS = POLL_TIMEOUT_SECONDS + 1.0

SERVER_START_TIMEOUT_SECONDS = 20.0

DIGAAS_SETTINGS = {
    "MAX_IN_FLIGHT": 1_000_000,
    "MAX_QUERIES_PER_SECOND_PER_NAMESERVER": 1e6,
    "DNS_QUERY_TIMEOUT_SECONDS": 1,
    "LOG_LEVEL": "WARNING",
}

# The uwsgi.ini options the echo app is served with. The ones inside
# if-env blocks there take these values when no DIGAAS_* variable is set,
# which is how LocalService runs digaas here.
ECHO_UWSGI_OPTIONS = {
    "master": "true",
    "need-app": "true",
    "lazy-apps": "true",
    "gevent-early-monkey-patch": "true",
    "gevent": "10000",
    "processes": "1",
    "die-on-term": "true",
    "worker-reload-mercy": "5",
    "disable-logging": "true",
    "post-buffering": "0",
    "add-header": "Connection: close",
    "buffer-size": "32768",
}
# The apps of bench/echo_app.py that each run beside digaas: target name ->
# the WSGI callable's name in echo_app.
ECHO_APPS = {"echo": "application", "echo-idle": "idle_wait_application"}

# The name of the poll process of bench/split_polls.py in the CPU tables.
SPLIT_CHILD = "poll child"

# Options of uwsgi.ini that name digaas's code, and so differ for the echo app.
OPTIONS_NAMING_THE_APP = {"pythonpath", "module"}

LUA_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d,'
    .. ' "write_errors": %d, "status_errors": %d, "timeouts": %d,'
    .. ' "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_POST_BODY")
""" + LUA_DONE

LUA_GET = """
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  ids[#ids + 1] = line
end
local next_index = 0

request = function()
  next_index = next_index % #ids + 1
  return wrk.format("GET", "/requests/" .. ids[next_index])
end
""" + LUA_DONE


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Measure POST /requests and GET /requests/{id} of digaas (sqlite and Redis)"
                    " with wrk, beside a bare falcon echo app (and the same app waiting for an idle loop)"
                    " under the same uwsgi options.")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 s per wrk run, one round")
    parser.add_argument("--seconds", type=int, help="seconds of each wrk run (default 15, or 4 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument("--rounds", type=int,
                        help="rounds; each runs every endpoint against every server once"
                             " (default 2, or 1 with --quick)")
    parser.add_argument("--storages", nargs="+", choices=("sqlite", "redis"), default=["sqlite", "redis"],
                        help="digaas storages to measure (default both)")
    parser.add_argument("--split-polls", action="store_true",
                        help="also measure bench/split_polls.py, digaas with its polls in a child"
                             " process of the worker (an experiment, not a digaas setting), per storage")
    parser.add_argument("--profile-with", metavar="PY_SPY",
                        help="path of a py-spy executable: sample each server's worker during each run"
                             " and print the functions that take the most samples. Sampling slows"
                             " the worker, so use the rates of such a run only to compare shares.")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait for a 1-minute load average below this before starting (default 1.5)")
    parser.add_argument("--max-load-wait", type=float, default=600.0,
                        help="seconds to wait at most for that load (default 600; 0 skips the wait)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 4 if args.quick else 15
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    return args


# Servers.

def uwsgi_ini_options():
    """Return the options of uwsgi.ini that hold outside if-env blocks, as name -> value."""
    options = {}
    depth = 0
    for raw_line in (REPOSITORY_ROOT / "uwsgi.ini").read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith((";", "#", "[")):
            continue
        name, _, value = (part.strip() for part in line.partition("="))
        if name in ("if-env", "if-not-env"):
            depth += 1
        elif name == "endif":
            depth -= 1
        elif depth == 0:
            options[name] = value
    return options


def check_echo_options():
    """Raise RuntimeError when uwsgi.ini has an option the echo app's command lacks or changes."""
    differences = []
    for name, value in uwsgi_ini_options().items():
        if name in OPTIONS_NAMING_THE_APP:
            continue
        if ECHO_UWSGI_OPTIONS.get(name) != value:
            differences.append(f"{name} = {value} (echo app: {ECHO_UWSGI_OPTIONS.get(name)})")
    if differences:
        raise RuntimeError("uwsgi.ini and ECHO_UWSGI_OPTIONS in bench_api.py differ: "
                           + "; ".join(differences) + "; update ECHO_UWSGI_OPTIONS")


class BenchServer:
    """A WSGI module of bench/ under uwsgi, with the uwsgi.ini options on the command line.

    module is "echo_app:application", "split_polls:application" and the
    like. environment adds variables to the server's environment.
    """

    def __init__(self, workdir, name, module, environment=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(workdir) / f"{name}-uwsgi.log"
        self.environment = dict(os.environ, **(environment or {}))
        self.command = [benchlib.uwsgi_executable()]
        for option, value in ECHO_UWSGI_OPTIONS.items():
            # On the command line a boolean option is a flag without a value.
            self.command += [f"--{option}"] if value == "true" else [f"--{option}", value]
        self.command += ["--http-socket", f"127.0.0.1:{self.port}",
                         "--pythonpath", str(REPOSITORY_ROOT), "--pythonpath", str(REPOSITORY_ROOT / "bench"),
                         "--module", module]
        if sys.prefix != sys.base_prefix:
            self.command += ["--virtualenv", sys.prefix]
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.environment)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uwsgi exited with {self.process.returncode};"
                                   f" see {self.log_path}")
            try:
                requests.get(self.url + "/requests/x", timeout=1, headers=benchlib.CLOSE_CONNECTION)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uwsgi did not respond within {SERVER_START_TIMEOUT_SECONDS} s;"
                           f" see {self.log_path}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_split_server(work, storage, redis_url):
    """Start bench/split_polls.py, digaas with its polls in a child process, on storage."""
    service_dir = work / f"digaas-{storage}-split"
    service_dir.mkdir()
    environment = {f"DIGAAS_{name}": str(value) for name, value in DIGAAS_SETTINGS.items()}
    environment.update(PYTHONPATH=str(REPOSITORY_ROOT), DIGAAS_STORAGE=storage,
                       DIGAAS_SQLITE_PATH=str(service_dir / "digaas.sqlite3"))
    if redis_url:
        # Its own keys in the same redis-server as digaas on Redis.
        environment.update(DIGAAS_REDIS_URL=redis_url, DIGAAS_REDIS_KEY_PREFIX="digaas-split")
    return BenchServer(work, f"digaas-{storage}-split", "split_polls:application", environment).start()


def poll_child_pid(worker_pid, timeout_seconds=10.0):
    """Return the pid of the poll process that a split_polls worker started."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        children = benchlib.child_pids(worker_pid)
        if children:
            return children[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"split_polls worker {worker_pid} started no poll process"
                               f" within {timeout_seconds} s; see its uwsgi log")
        time.sleep(0.1)


def post_body(bind_port):
    return {"nameserver": "127.0.0.1", "port": bind_port, "zone_name": ZONE_NAME,
            "serial": UNREACHED_SERIAL, "condition": "serial_not_lower", "start_time": time.time(),
            "timeout": POLL_TIMEOUT_SECONDS, "frequency": POLL_FREQUENCY_SECONDS}


# wrk.

def run_wrk(url, script_path, environment, args):
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
               "-s", str(script_path), url]
    completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                               timeout=args.seconds + 60, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}:\n{completed.stderr}{completed.stdout}")
    match = re.search(r"^RESULT (\{.*\})$", completed.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no RESULT line:\n{completed.stdout}")
    result = json.loads(match.group(1))
    seconds = result["duration_us"] / 1e6
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", completed.stdout)
    return {
        "command": command,
        "requests": result["requests"],
        "requests_per_second": round(result["requests"] / seconds, 1),
        "p50_ms": round(result["p50_us"] / 1e3, 2),
        "p90_ms": round(result["p90_us"] / 1e3, 2),
        "p99_ms": round(result["p99_us"] / 1e3, 2),
        "max_ms": round(result["max_us"] / 1e3, 2),
        "socket_errors": {name: result[name] for name in
                          ("connect_errors", "read_errors", "write_errors", "timeouts")},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "output": completed.stdout.split("RESULT")[0].rstrip(),
    }


def measure(target, endpoint, scripts, environment, args, profile_path=None):
    worker_pid = target["worker_pid"]
    profiler = None
    if profile_path is not None:
        profiler = subprocess.Popen(
            [args.profile_with, "record", "--pid", str(worker_pid), "--duration", str(args.seconds),
             "--rate", "200", "--format", "raw", "--output", str(profile_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The CPU of every process the run keeps busy: the worker, wrk (the only
    # child process that ends during the run) and the BIND9 and Redis
    # servers, which a poll and a Redis read make work as well.
    pids = dict(target["helper_pids"], worker=worker_pid)
    cpu_before = {name: benchlib.cpu_seconds(pid) for name, pid in pids.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = run_wrk(target["url"] + ("/requests" if endpoint == "POST" else ""),
                     scripts[endpoint], dict(environment, BENCH_IDS_FILE=target["ids_file"]), args)
    elapsed = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = {name: benchlib.cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu_seconds["wrk"] = (children_after.ru_utime + children_after.ru_stime
                          - children_before.ru_utime - children_before.ru_stime)
    result["worker_cpu_fraction"] = round(cpu_seconds["worker"] / elapsed, 3)
    result["cpu_us_per_request"] = {name: round(seconds / max(result["requests"], 1) * 1e6, 1)
                                    for name, seconds in cpu_seconds.items()}
    result["machine_cpu_fraction"] = round(sum(cpu_seconds.values()) / elapsed, 3)
    if profiler is not None:
        profiler.wait(timeout=args.seconds + 60)
        result["profile"] = summarize_profile(profile_path)
    return result


def summarize_profile(path, top=12):
    """Return the frames with the most samples in a py-spy raw (collapsed stacks) file.

    "self" counts the samples whose innermost frame is the function,
    "inclusive" those that have it anywhere on the stack.
    """
    total = 0
    self_samples = {}
    inclusive_samples = {}
    for line in pathlib.Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive_samples[frame] = inclusive_samples.get(frame, 0) + count

    def top_shares(samples):
        ranked = sorted(samples.items(), key=lambda item: item[1], reverse=True)[:top]
        return [[frame, round(count / total, 3)] for frame, count in ranked]

    return {"samples": total, "self": top_shares(self_samples), "inclusive": top_shares(inclusive_samples)}


def prepare_ids(url, bind_port, workdir, name):
    """Write the ids that GET /requests/{id} cycles through to a file, one a line; return its path.

    digaas gets GET_IDS requests posted now. The echo apps ignore the id, so
    their files repeat the id of the fixed record.
    """
    if name in ECHO_APPS:
        ids = [echo_app.FIXED_RECORD["id"]] * GET_IDS
    else:
        ids, statuses, _ = benchlib.post_requests(url, [post_body(bind_port)] * GET_IDS, threads=8)
        if statuses != {202: GET_IDS}:
            raise RuntimeError(f"{name}: posting the GET ids returned {statuses}")
    path = pathlib.Path(workdir) / f"ids-{name}.txt"
    path.write_text("\n".join(ids) + "\n")
    return str(path)


def count_log_problems(log_path):
    """Return how many lines of a uwsgi log report an error or a traceback."""
    text = pathlib.Path(log_path).read_text(errors="replace")
    return {"error_lines": len(re.findall(r" (ERROR|CRITICAL) ", text)),
            "tracebacks": text.count("Traceback (most recent call last)")}


# Output.

def summarize(runs):
    """Average the rounds of each (target, endpoint) pair."""
    summary = {}
    for run in runs:
        entry = summary.setdefault((run["target"], run["endpoint"]), [])
        entry.append(run)
    table = {}
    for (target, endpoint), entries in summary.items():
        count = len(entries)
        table[f"{target} {endpoint}"] = {
            "target": target, "endpoint": endpoint, "rounds": count,
            "requests_per_second": round(sum(entry["requests_per_second"] for entry in entries) / count, 1),
            "requests_per_second_rounds": [entry["requests_per_second"] for entry in entries],
            "p50_ms": round(sum(entry["p50_ms"] for entry in entries) / count, 2),
            "p99_ms": round(sum(entry["p99_ms"] for entry in entries) / count, 2),
            "worker_cpu_fraction": round(sum(entry["worker_cpu_fraction"] for entry in entries) / count, 3),
            "machine_cpu_fraction": round(sum(entry["machine_cpu_fraction"] for entry in entries) / count, 3),
            "cpu_us_per_request": {
                name: round(sum(entry["cpu_us_per_request"].get(name, 0.0) for entry in entries) / count, 1)
                for name in entries[0]["cpu_us_per_request"]},
            "non_2xx": sum(entry["non_2xx"] for entry in entries),
            "socket_errors": sum(sum(entry["socket_errors"].values()) for entry in entries),
        }
    return table


def compute_ratios(table):
    """Return the ratio of each digaas run's rate to each echo app's, for the same endpoint."""
    ratios = {}
    for baseline in ECHO_APPS:
        for entry in table.values():
            if entry["target"] in ECHO_APPS:
                continue
            echo = table.get(f"{baseline} {entry['endpoint']}")
            if echo:
                ratios[f"{entry['target']} / {baseline}, {entry['endpoint']}"] = benchlib.ratio(
                    entry["requests_per_second"], echo["requests_per_second"])
    return ratios


def cores_at_target(table, target_ratio=0.80):
    """Estimate the cores each digaas POST needs at the target rate, at its measured CPU per request.

    It adds the CPU of every process measured (worker, wrk, named,
    redis-server, poll child) per POST and multiplies it by target_ratio
    times the bare echo app's POST rate. Above the machine's cores, the
    target cannot be reached without cutting that CPU, however the work is
    spread over processes.
    """
    echo = table.get("echo POST")
    if echo is None:
        return {}
    rate = target_ratio * echo["requests_per_second"]
    return {name: round(sum(entry["cpu_us_per_request"].values()) * rate / 1e6, 2)
            for name, entry in table.items()
            if entry["endpoint"] == "POST" and entry["target"] not in ECHO_APPS}


def print_tables(result):
    rows = [[name, entry["requests_per_second"],
             " ".join(f"{value:.0f}" for value in entry["requests_per_second_rounds"]),
             entry["p50_ms"], entry["p99_ms"], entry["worker_cpu_fraction"], entry["non_2xx"],
             entry["socket_errors"]]
            for name, entry in result["summary"].items()]
    print()
    print(benchlib.format_table(["server endpoint", "req/s", "req/s per round", "p50 ms", "p99 ms",
                                 "worker CPU", "non-2xx", "socket errors"], rows))
    print("worker CPU: CPU seconds of the uwsgi worker per second of the run; 1.00 is one core.")
    print()
    processes = ["worker", "wrk", "named", "redis-server", SPLIT_CHILD]
    rows = [[name, entry["machine_cpu_fraction"]]
            + [entry["cpu_us_per_request"].get(process, "") for process in processes]
            + [round(sum(entry["cpu_us_per_request"].values()), 1)]
            for name, entry in result["summary"].items()]
    print(benchlib.format_table(["server endpoint", "all CPU"] + [f"{process} us" for process in processes]
                                + ["sum us"], rows))
    print("all CPU: cores used by these processes together; us: CPU microseconds per request.")
    print()
    print(benchlib.format_table(["POST, cores needed at 0.80 of echo", "cores"],
                                [[name, value] for name, value in result["cores_at_target"].items()]))
    print(f"cores: the sum of CPU microseconds per POST above (every process, wrk included), times"
          f" 0.80 of echo's POST rate;\nthis machine has {os.cpu_count()}. split: bench/split_polls.py,"
          f" digaas with its polls in a child process (the poll child).")
    print()
    print(benchlib.format_table(["ratio of req/s (target >= 0.80 of echo)", "value"],
                                [[name, value] for name, value in result["ratios"].items()]))
    print("echo-idle: the echo app that waits until the loop is idle before answering,"
          " as digaas does\nwhen it gathers a Redis batch or a group commit (see bench/echo_app.py).")
    for run in result["runs"]:
        if "profile" not in run:
            continue
        print(f"\npy-spy, {run['target']} {run['endpoint']} round {run['round']}:"
              f" {run['profile']['samples']} samples")
        for kind in ("inclusive", "self"):
            print(f"  {kind}:")
            for frame, share in run["profile"][kind]:
                print(f"    {share:6.1%}  {frame}")
    for name, problems in result["log_problems"].items():
        if any(problems.values()):
            print(f"{name} log: {problems}")


def main(argv=None):
    args = parse_arguments(argv)
    benchlib.exit_on_sigterm()
    check_echo_options()
    result = benchlib.run_header("api")
    result["arguments"] = vars(args)
    if args.max_load_wait > 0:
        result["load"] = benchlib.wait_for_quiet_machine(args.max_load, args.max_load_wait)

    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir:
        work = pathlib.Path(workdir)
        scripts = {"POST": work / "post.lua", "GET": work / "get.lua"}
        scripts["POST"].write_text(LUA_POST)
        scripts["GET"].write_text(LUA_GET)

        servers = []
        redis_server = None
        try:
            bind = LocalBind(work / "bind", listen_ipv6=False)
            servers.append(bind)
            bind.start()
            bind.add_zone(ZONE_NAME, serial=ZONE_SERIAL)

            targets = {}
            for name, callable_name in ECHO_APPS.items():
                echo = BenchServer(workdir, name, f"echo_app:{callable_name}")
                servers.append(echo)
                echo.start()
                targets[name] = {"url": echo.url, "log": echo.log_path, "command": echo.command,
                                 "worker_pid": benchlib.uwsgi_worker_pids(echo.process.pid, 1)[0],
                                 "helper_pids": {"named": bind.pid}}

            for storage in args.storages:
                redis_url = None
                if storage == "redis":
                    (work / "redis").mkdir()
                    redis_server = redisproc.RedisProcess(work / "redis")
                    redis_server.start()
                    redis_url = redis_server.url
                service_dir = work / f"digaas-{storage}"
                service_dir.mkdir()
                service = LocalService(service_dir, storage=storage, redis_url=redis_url,
                                       settings=DIGAAS_SETTINGS)
                servers.append(service)
                service.start()
                helper_pids = {"named": bind.pid}
                if redis_server is not None:
                    helper_pids["redis-server"] = redis_server.pid
                targets[f"digaas-{storage}"] = {
                    "url": service.url, "log": service.log_path,
                    "worker_pid": benchlib.uwsgi_worker_pids(service.process.pid, 1)[0],
                    "helper_pids": helper_pids}

                if args.split_polls:
                    split = start_split_server(work, storage, redis_url)
                    servers.append(split)
                    worker_pid = benchlib.uwsgi_worker_pids(split.process.pid, 1)[0]
                    targets[f"digaas-{storage}-split"] = {
                        "url": split.url, "log": split.log_path, "worker_pid": worker_pid,
                        "helper_pids": dict(helper_pids, **{SPLIT_CHILD: poll_child_pid(worker_pid)})}

            for name, target in targets.items():
                target["ids_file"] = prepare_ids(target["url"], bind.port, workdir, name)
            time.sleep(SETTLE_SECONDS)

            environment = dict(os.environ, BENCH_POST_BODY=json.dumps(post_body(bind.port)))
            runs = []
            for round_index in range(args.rounds):
                for endpoint in ("POST", "GET"):
                    for name, target in targets.items():
                        print(f"round {round_index + 1}: {endpoint} {name}", flush=True)
                        load = benchlib.load_average()
                        profile_path = None
                        if args.profile_with:
                            profile_path = work / f"profile-{name}-{endpoint}-{round_index + 1}.txt"
                        run = measure(target, endpoint, scripts, environment, args, profile_path)
                        run.update(target=name, endpoint=endpoint, round=round_index + 1, load_average=load)
                        runs.append(run)
                        print(f"  {run['requests_per_second']} req/s, p50 {run['p50_ms']} ms,"
                              f" p99 {run['p99_ms']} ms, worker CPU {run['worker_cpu_fraction']},"
                              f" non-2xx {run['non_2xx']}, socket errors {run['socket_errors']}", flush=True)
                        if endpoint == "POST":
                            time.sleep(SETTLE_SECONDS)

            result["echo_command"] = targets["echo"]["command"]
            result["log_problems"] = {name: count_log_problems(target["log"]) for name, target in targets.items()}
            result["runs"] = runs
            result["load_average_at_end"] = benchlib.load_average()
        finally:
            for server in reversed(servers):
                try:
                    server.stop()
                except RuntimeError as error:
                    print(f"stopping {server!r} failed: {error}", file=sys.stderr)
            if redis_server is not None:
                redis_server.stop()

    result["summary"] = summarize(result["runs"])
    result["ratios"] = compute_ratios(result["summary"])
    result["cores_at_target"] = cores_at_target(result["summary"])
    print_tables(result)
    path = benchlib.write_results("api", result)
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
