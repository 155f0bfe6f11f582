"""Measure the CPU cost of POST /requests and GET /requests/{id} inside one process.

The script calls digaas's WSGI app directly, without uwsgi or HTTP, from 64
greenlets, against a throwaway BIND9 and a sqlite file or a throwaway
redis-server. This separates what digaas's own code costs per request from
what uwsgi, the socket and wrk cost (bench_api.py measures everything
together). A posted request polls at 1 s with a 2 s timeout for a serial
the zone never reaches, as in bench_api.py, so a POST also pays for about
two queries and one result write. The script waits for those before it
stops the clock.

    python bench/profile_api.py --endpoint post --storage sqlite
    python bench/profile_api.py --endpoint get --storage redis --profile 25

It prints CPU microseconds per request. With --profile N it runs under
cProfile and prints the N functions with the most time (--sort). Profiling
slows everything, so compare shares, not the CPU figure, of such a run.
"""

from gevent import monkey
monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))
sys.path.insert(0, str(REPOSITORY_ROOT / "tests"))

import digaas_config  # noqa: E402
import redisproc  # noqa: E402
from digaas import app as app_module  # noqa: E402
from digaas import storage_redis  # noqa: E402
from digaas import storage_sqlite  # noqa: E402
from digaas.localbind import LocalBind  # noqa: E402

ZONE_NAME = "z0.profile.bench."
ZONE_SERIAL = 1000
UNREACHED_SERIAL = 2000
POLL_TIMEOUT_SECONDS = 2.0
CLIENT_GREENLETS = 64
GET_IDS = 200


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("post", "get"), default="post")
    parser.add_argument("--storage", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--requests", type=int, default=20000,
                        help="requests to send (default 20000)")
    parser.add_argument("--profile", type=int, metavar="N",
                        help="run under cProfile and print the N functions with the most time")
    parser.add_argument("--sort", choices=("tottime", "cumulative"), default="tottime",
                        help="order of the profile: own time or time including callees"
                             " (default tottime)")
    return parser.parse_args(argv)


class DirectClient:
    """A caller of a WSGI app that builds the environ as uwsgi would, without a socket."""

    def __init__(self, application):
        self._application = application
        self.statuses = set()

    def _start_response(self, status, headers, exc_info=None):
        self.statuses.add(status)

    def call(self, method, path, body=b""):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9090",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                   "wsgi.errors": sys.stderr}
        return b"".join(self._application(environ, self._start_response))


def run_in_greenlets(count, call):
    """Make count calls of call(index) from CLIENT_GREENLETS greenlets."""
    def client(first):
        for index in range(first, count, CLIENT_GREENLETS):
            call(index)

    gevent.joinall([gevent.spawn(client, first) for first in range(CLIENT_GREENLETS)],
                   raise_error=True)


def measure(args, client, body, profiler):
    """Return CPU seconds per request of the measured endpoint."""
    if args.endpoint == "get":
        ids = [json.loads(client.call("POST", "/requests", body))["id"] for _ in range(GET_IDS)]
        gevent.sleep(POLL_TIMEOUT_SECONDS + 1)   # let those polls end first

    cpu_started = time.process_time()
    profiler.enable()
    if args.endpoint == "post":
        run_in_greenlets(args.requests, lambda index: client.call("POST", "/requests", body))
        gevent.sleep(POLL_TIMEOUT_SECONDS + 1.5)   # the polls the POSTs started
    else:
        run_in_greenlets(args.requests,
                         lambda index: client.call("GET", f"/requests/{ids[index % GET_IDS]}"))
    profiler.disable()
    return (time.process_time() - cpu_started) / args.requests


def main(argv=None):
    args = parse_arguments(argv)
    profiler = cProfile.Profile()
    if args.profile is None:
        profiler.enable = profiler.disable = lambda: None

    with tempfile.TemporaryDirectory() as workdir, \
            LocalBind(workdir + "/bind", listen_ipv6=False) as bind:
        bind.add_zone(ZONE_NAME, serial=ZONE_SERIAL)
        redis_server = None
        if args.storage == "redis":
            pathlib.Path(workdir, "redis").mkdir()
            redis_server = redisproc.RedisProcess(pathlib.Path(workdir, "redis"))
            redis_server.start()
            backend = storage_redis.RedisStorage(redis_server.url, key_prefix="profile")
        else:
            backend = storage_sqlite.SqliteStorage(workdir + "/digaas.sqlite3",
                                                   busy_timeout_seconds=5)
        try:
            config = digaas_config.load({"DIGAAS_MAX_IN_FLIGHT": "1000000"})
            client = DirectClient(app_module.create_app(backend, config))
            body = json.dumps({
                "nameserver": "127.0.0.1", "port": bind.port, "zone_name": ZONE_NAME,
                "serial": UNREACHED_SERIAL, "condition": "serial_not_lower",
                "start_time": time.time(), "timeout": POLL_TIMEOUT_SECONDS,
                "frequency": 1.0}).encode()

            cpu_seconds = measure(args, client, body, profiler)
        finally:
            backend.close()
            if redis_server is not None:
                redis_server.stop()

    print(f"{args.endpoint.upper()} on {args.storage}: {args.requests} requests,"
          f" {cpu_seconds * 1e6:.0f} us of CPU each, statuses {sorted(client.statuses)}")
    if args.profile:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)


if __name__ == "__main__":
    main()
