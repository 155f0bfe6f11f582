"""`digaas demo`: measure zone creates, updates and deletes on a throwaway BIND9.

The demo starts a LocalBind on loopback and, unless --url names a running
digaas, a LocalService with sqlite storage, both in a temporary directory.
It then makes three changes per zone at a fixed rate and posts one poll
request per change:

- create: add_zone(serial 1), then poll serial_not_lower 1. named returns
  REFUSED for a zone it does not serve, so the condition is not met before.
- update: set_serial(2), then poll serial_not_lower 2.
- delete: delete_zone(), then poll zone_removed.

The poll requests alternate between 127.0.0.1 and ::1, or use only
127.0.0.1 when the host has no IPv6 loopback.

start_time is the wall-clock time just before the change. LocalBind returns
only once 127.0.0.1 shows the change, so a poll request posted after the
change completes on its first query, and its duration covers the change, the
POST and that query. With --post-first the request is posted before the
change, so digaas queries the old state first and the durations also contain
the wait for the next polling slot (up to --frequency).
"""

import argparse
import concurrent.futures
import dataclasses
import logging
import math
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from digaas import localbind
from digaas import localservice
from digaas import model

LOG = logging.getLogger(__name__)

DEFAULT_ZONES = 200
DEFAULT_RATE_PER_SECOND = 20.0
DEFAULT_FREQUENCY_SECONDS = 0.5
DEFAULT_TIMEOUT_SECONDS = 30.0

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
CHANGE_TYPES = (CREATE, UPDATE, DELETE)

# Serials of a zone after its create and after its update.
CREATED_SERIAL = 1
UPDATED_SERIAL = 2

# A zone's next change is planned at least --frequency plus this margin
# after its previous one. A poll request posted before its change detects the
# change at most --frequency after it was made, and the margin covers the
# POST and the query. Without the gap a delete could remove a zone before the
# poll request of its update received serial 2, and that request would end
# in ERROR.
ZONE_CHANGE_MARGIN_SECONDS = 1.0

# Changes run in rate * CHANGE_BUDGET_SECONDS worker threads, within these
# bounds. That keeps up with the rate while a change takes up to
# CHANGE_BUDGET_SECONDS, and slower changes make the schedule fall behind,
# which the report shows.
MIN_WORKER_THREADS = 4
MAX_WORKER_THREADS = 64
CHANGE_BUDGET_SECONDS = 1.0

# A change that starts later than this after its planned time counts as
# behind schedule in the report.
LATENESS_TOLERANCE_SECONDS = 0.1

# After the last change, waiting for results stops at --timeout plus this
# margin, which covers the last POST and the result reaching storage.
WAIT_MARGIN_SECONDS = 10.0
RESULT_POLL_INTERVAL_SECONDS = 0.5

HTTP_TIMEOUT_SECONDS = 5.0
WORKER_CHECK_INTERVAL_SECONDS = 0.05
SERVICE_LOG_TAIL_LINES = 15
PROGRESS_INTERVAL_SECONDS = 2.0

# How many not completed changes the report lists one by one.
MAX_LISTED_PROBLEMS = 10


class DemoError(Exception):
    """Failure that stops the demo. The message gives the cause and the next step."""


@dataclasses.dataclass
class Change:
    """One planned zone change, the poll request posted for it and its result."""

    index: int
    change_type: str
    zone_name: str

    # Offset of the planned start from the start of the schedule.
    planned_offset_seconds: float = 0.0
    lateness_seconds: float | None = None

    # Wall-clock time (unix seconds) just before the change (or its POST with
    # --post-first), sent as the poll request's start_time.
    start_time: float | None = None
    nameserver: str | None = None
    request_id: str | None = None

    # The final status of the poll request (COMPLETED or ERROR), or None
    # while it is unknown.
    status: str | None = None
    duration_seconds: float | None = None

    # Whether BIND9 made the change. Later changes of the zone need it.
    applied: bool = False

    # Why the change has no COMPLETED result, when it has none.
    problem: str | None = None

    # Set once the worker is done with the change, whatever the outcome.
    finished: bool = False

    @property
    def completed(self):
        return self.status == model.COMPLETED


@dataclasses.dataclass
class Summary:
    """Counts and duration statistics of one change type, or of all changes."""

    label: str
    count: int
    completed: int
    errors: int
    min_seconds: float | None
    median_seconds: float | None
    p90_seconds: float | None
    max_seconds: float | None


# Option parsing.

def add_arguments(parser):
    """Add the options of `digaas demo` to an argparse (sub)parser."""
    parser.add_argument(
        "--url", type=_service_url, metavar="URL",
        help="use the digaas running at URL (such as http://127.0.0.1:9090) instead of"
             " starting one; it must reach 127.0.0.1 and ::1 of this host")
    parser.add_argument(
        "--zones", type=_positive_int, default=DEFAULT_ZONES, metavar="N",
        help=f"number of zones, each of which gets a create, an update and a delete"
             f" (default {DEFAULT_ZONES})")
    parser.add_argument(
        "--rate", type=_positive_float, default=DEFAULT_RATE_PER_SECOND,
        metavar="CHANGES_PER_SECOND", dest="rate_per_second",
        help=f"zone changes started per second (default {DEFAULT_RATE_PER_SECOND:g})")
    parser.add_argument(
        "--frequency", type=_positive_float, default=DEFAULT_FREQUENCY_SECONDS,
        metavar="SECONDS", dest="frequency_seconds",
        help=f"seconds between two queries of one poll request"
             f" (default {DEFAULT_FREQUENCY_SECONDS:g})")
    parser.add_argument(
        "--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS", dest="timeout_seconds",
        help=f"seconds after which digaas gives up a poll request and marks it ERROR"
             f" (default {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument(
        "--post-first", action="store_true",
        help="post each poll request before making its change, so digaas polls the old"
             " state first (default: make the change, then post)")
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the temporary directory with the BIND9 and digaas files and logs,"
             " and print its path")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: use a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: use a number of at least 1")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: use a number greater than 0") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: use a finite number greater than 0")
    return value


def _service_url(text):
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"invalid URL {text!r}: use an http:// or https:// URL such as http://127.0.0.1:9090")
    return text.rstrip("/")


# Planning and statistics.

def pipeline_lag_zones(zone_count, rate_per_second, zone_gap_seconds):
    """Return how many zones the updates trail the creates, and the deletes the updates.

    A lag of zone_gap_seconds * rate_per_second zones keeps each zone's
    changes zone_gap_seconds apart without pauses, even where a step has a
    single change. The lag is at most a third of the zones, so that creates,
    updates and deletes still overlap in a small run.
    """
    lag_for_gap = math.ceil(zone_gap_seconds * rate_per_second)
    return max(1, min(lag_for_gap, zone_count // 3))


def zone_name(run_id, zone_number):
    return f"z{zone_number:04d}.{run_id}.demo.test."


def plan_changes(zone_count, run_id, rate_per_second, zone_gap_seconds):
    """Return the changes of the run in schedule order, three per zone.

    Step s creates zone s, updates zone s - lag and deletes zone s - 2 * lag,
    so each zone's update comes after its create and its delete after its
    update. Changes are planned 1 / rate_per_second seconds apart, except that
    a change waits until zone_gap_seconds after the zone's previous change.
    Such pauses happen only when the lag is too small for the gap, which is
    the case in runs of few zones.
    """
    lag = pipeline_lag_zones(zone_count, rate_per_second, zone_gap_seconds)
    interval_seconds = 1 / rate_per_second
    next_offset_seconds = 0.0
    last_offset_by_zone = {}
    changes = []

    for step in range(zone_count + 2 * lag):
        for change_type, zone_number in ((CREATE, step), (UPDATE, step - lag),
                                         (DELETE, step - 2 * lag)):
            if not 0 <= zone_number < zone_count:
                continue

            offset_seconds = next_offset_seconds
            if zone_number in last_offset_by_zone:
                offset_seconds = max(offset_seconds,
                                     last_offset_by_zone[zone_number] + zone_gap_seconds)

            changes.append(Change(index=len(changes), change_type=change_type,
                                  zone_name=zone_name(run_id, zone_number),
                                  planned_offset_seconds=offset_seconds))
            last_offset_by_zone[zone_number] = offset_seconds
            next_offset_seconds = offset_seconds + interval_seconds

    return changes


def zone_gap_seconds(frequency_seconds):
    """Return the least time planned between two changes of one zone."""
    return frequency_seconds + ZONE_CHANGE_MARGIN_SECONDS


def nearest_rank_percentile(values, percent):
    """Return the nearest-rank percentile: the smallest value with at least percent % of values <= it.

    percent 0 returns the minimum. Raises ValueError for no values or a
    percent outside 0..100.
    """
    if not values:
        raise ValueError("no values: a percentile needs at least one value")
    if not 0 <= percent <= 100:
        raise ValueError(f"invalid percent {percent!r}: use 0 to 100")

    ordered = sorted(values)
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(label, changes):
    durations = [change.duration_seconds for change in changes if change.completed]
    completed = len(durations)

    if not durations:
        return Summary(label, len(changes), 0, len(changes), None, None, None, None)

    return Summary(
        label=label,
        count=len(changes),
        completed=completed,
        errors=len(changes) - completed,
        min_seconds=min(durations),
        median_seconds=nearest_rank_percentile(durations, 50),
        p90_seconds=nearest_rank_percentile(durations, 90),
        max_seconds=max(durations),
    )


def format_table(summaries):
    """Return the result table, one row per Summary, durations with 3 decimals."""
    header = f"{'change':<8}{'count':>7}{'completed':>11}{'errors':>8}" \
             f"{'min':>9}{'median':>9}{'p90':>9}{'max':>9}"
    lines = [header]

    for summary in summaries:
        durations = [summary.min_seconds, summary.median_seconds,
                     summary.p90_seconds, summary.max_seconds]
        duration_text = "".join(
            f"{'-' if value is None else f'{value:.3f}':>9}" for value in durations)
        lines.append(f"{summary.label:<8}{summary.count:>7}{summary.completed:>11}"
                     f"{summary.errors:>8}{duration_text}")

    return "\n".join(lines)


# Talking to digaas.

class DigaasClient:
    """The two calls of the digaas HTTP API that the demo uses."""

    def __init__(self, url):
        self.url = url

    def check(self):
        """Raise DemoError unless GET / at the URL returns a digaas."""
        try:
            response = requests.get(self.url + "/", timeout=HTTP_TIMEOUT_SECONDS)
            service = response.json().get("service")
        except (requests.RequestException, ValueError, AttributeError) as error:
            raise DemoError(f"no digaas responded at {self.url}: {error}; start one with"
                            " `digaas serve` or leave out --url") from None

        if response.status_code != 200 or service != "digaas":
            raise DemoError(f"{self.url} is not a digaas: GET / returned HTTP"
                            f" {response.status_code} {response.text[:200]!r}")

    def post_request(self, body):
        """Post a poll request; return its id.

        Raises DemoError when digaas rejects the request with a 4xx status,
        because every later request would be rejected too, and
        requests.RequestException or RuntimeError for other failures.
        """
        response = requests.post(self.url + "/requests", json=body,
                                 timeout=HTTP_TIMEOUT_SECONDS)
        if 400 <= response.status_code < 500:
            raise DemoError(f"digaas rejected the poll request {body} with HTTP"
                            f" {response.status_code}: {response.text[:500]}")
        if response.status_code != 202:
            raise RuntimeError(f"POST /requests returned HTTP {response.status_code}:"
                               f" {response.text[:200]}")
        return response.json()["id"]

    def get_request(self, request_id):
        """Return the stored poll request as a dict, or None if digaas has none with this id."""
        response = requests.get(f"{self.url}/requests/{request_id}",
                                timeout=HTTP_TIMEOUT_SECONDS)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()


# The run.

class DemoRun:
    """Makes the planned changes on a LocalBind and collects the poll results."""

    def __init__(self, args, bind, client, nameservers, changes, service=None):
        self.args = args
        self.bind = bind
        self.client = client
        self.service = service
        self.nameservers = nameservers
        self.changes = changes

        # Set to stop the workers: on Ctrl-C, and when digaas rejects a request.
        self.stop_event = threading.Event()
        self.abort_error = None

        self.failed_fetch_count = 0

    def make_changes(self):
        """Start every change at its planned time; return when all are finished.

        Raises DemoError when digaas rejected a poll request.
        """
        worker_count = min(MAX_WORKER_THREADS, max(
            MIN_WORKER_THREADS, math.ceil(self.args.rate_per_second * CHANGE_BUDGET_SECONDS)))
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=worker_count, thread_name_prefix="demo-change")
        origin = time.monotonic()
        next_progress = origin + PROGRESS_INTERVAL_SECONDS

        # The future and Change of each zone's last submitted change. A
        # ThreadPoolExecutor hands tasks to its threads from a FIFO queue, so
        # the earlier future a worker waits for is running or done, and the
        # wait cannot deadlock.
        last_by_zone = {}

        try:
            for change in self.changes:
                planned = origin + change.planned_offset_seconds
                next_progress = self._sleep_until(planned, origin, next_progress)
                if self.stop_event.is_set():
                    break
                self.check_service()

                previous = last_by_zone.get(change.zone_name)
                future = pool.submit(self._perform, change, previous, planned)
                last_by_zone[change.zone_name] = (future, change)

            while not all(change.finished for change in self.changes) \
                    and not self.stop_event.is_set():
                next_progress = self._sleep_until(
                    time.monotonic() + WORKER_CHECK_INTERVAL_SECONDS, origin, next_progress)
        finally:
            self.stop_event.set()
            pool.shutdown(wait=True, cancel_futures=True)

        if self.abort_error is not None:
            raise self.abort_error

    def check_service(self):
        """Raise DemoError if the digaas that the demo started has exited."""
        if self.service is None or self.service.process.poll() is None:
            return
        raise DemoError(f"digaas exited with status {self.service.process.returncode};"
                        f" last lines of {self.service.log_path}:\n"
                        f"{self.service.log_tail(SERVICE_LOG_TAIL_LINES)}")

    def _sleep_until(self, moment, origin, next_progress):
        while True:
            now = time.monotonic()
            if now >= next_progress:
                self._print_change_progress(now - origin)
                next_progress += PROGRESS_INTERVAL_SECONDS
            if now >= moment or self.stop_event.is_set():
                return next_progress
            time.sleep(min(moment, next_progress) - now)

    def _print_change_progress(self, elapsed_seconds):
        finished = sum(1 for change in self.changes if change.finished)
        posted = sum(1 for change in self.changes if change.request_id is not None)
        latenesses = [change.lateness_seconds for change in self.changes
                      if change.lateness_seconds is not None]
        max_lateness = max(latenesses, default=0.0)
        progress(f"{elapsed_seconds:.1f} s: {finished} of {len(self.changes)} changes made,"
                 f" {posted} poll requests posted, max lateness {max_lateness:.3f} s")

    def _perform(self, change, previous, planned):
        try:
            if previous is not None:
                previous_future, previous_change = previous
                concurrent.futures.wait([previous_future])
                if not previous_change.applied:
                    change.problem = "not made: an earlier change of this zone failed"
                    return
            if self.stop_event.is_set():
                change.problem = "not made: the demo was stopped"
                return
            self._perform_change(change, planned)
        except DemoError as error:
            change.problem = f"stopped the demo: {error}"
            self.abort_error = error
            self.stop_event.set()
        except Exception as error:
            LOG.exception("zone %s: %s failed", change.zone_name, change.change_type)
            change.problem = f"failed: {error!r}"
        finally:
            change.finished = True

    def _perform_change(self, change, planned):
        change.nameserver = self.nameservers[change.index % len(self.nameservers)]
        change.lateness_seconds = max(0.0, time.monotonic() - planned)
        change.start_time = time.time()

        if self.args.post_first:
            self._post(change)

        try:
            self._apply(change)
        except (localbind.LocalBindError, ValueError) as error:
            LOG.warning("zone %s: %s failed: %s", change.zone_name, change.change_type, error)
            change.problem = f"{change.change_type} failed in BIND9: {error}"
            return
        change.applied = True

        if not self.args.post_first:
            self._post(change)

    def _apply(self, change):
        if change.change_type == CREATE:
            self.bind.add_zone(change.zone_name, serial=CREATED_SERIAL)
        elif change.change_type == UPDATE:
            self.bind.set_serial(change.zone_name, UPDATED_SERIAL)
        else:
            self.bind.delete_zone(change.zone_name)

    def _post(self, change):
        body = {
            "nameserver": change.nameserver,
            "port": self.bind.port,
            "zone_name": change.zone_name,
            "start_time": change.start_time,
            "timeout": self.args.timeout_seconds,
            "frequency": self.args.frequency_seconds,
        }
        if change.change_type == DELETE:
            body["condition"] = model.ZONE_REMOVED
        else:
            body["condition"] = model.SERIAL_NOT_LOWER
            body["serial"] = CREATED_SERIAL if change.change_type == CREATE else UPDATED_SERIAL

        try:
            change.request_id = self.client.post_request(body)
        except (requests.RequestException, RuntimeError, ValueError, KeyError) as error:
            LOG.warning("zone %s: posting the %s poll request failed: %s",
                        change.zone_name, change.change_type, error)
            change.problem = f"POST /requests failed: {error}"

    def wait_for_results(self):
        """Fetch the result of every posted request until none is ACCEPTED or the wait times out."""
        wait_seconds = self.args.timeout_seconds + WAIT_MARGIN_SECONDS
        origin = time.monotonic()
        deadline = origin + wait_seconds
        next_progress = origin + PROGRESS_INTERVAL_SECONDS
        pending = [change for change in self.changes
                   if change.request_id is not None and change.status is None]

        while pending:
            self.check_service()
            still_pending = []
            for change in pending:
                if not self._fetch_result(change):
                    still_pending.append(change)
            pending = still_pending

            now = time.monotonic()
            if not pending or now >= deadline:
                break
            if now >= next_progress:
                progress(f"waiting for results: {len(pending)} poll requests still"
                         f" ACCEPTED, giving up in {deadline - now:.0f} s")
                next_progress = now + PROGRESS_INTERVAL_SECONDS
            time.sleep(min(RESULT_POLL_INTERVAL_SECONDS, max(0.0, deadline - now)))

        for change in pending:
            change.problem = (f"request {change.request_id} still {model.ACCEPTED}"
                              f" {wait_seconds:g} s after the last change")

    def _fetch_result(self, change):
        """Store the request's result in change; return False while it is ACCEPTED."""
        try:
            record = self.client.get_request(change.request_id)
        except (requests.RequestException, ValueError) as error:
            self.failed_fetch_count += 1
            if self.failed_fetch_count == 1:
                LOG.warning("request %s: GET failed, retrying (later failures are only"
                            " counted): %s", change.request_id, error)
            return False

        if record is None:
            change.problem = f"request {change.request_id} not found in digaas"
            return True
        if record["status"] == model.ACCEPTED:
            return False

        change.status = record["status"]
        if change.completed:
            change.duration_seconds = record["duration"]
        else:
            change.problem = f"request {change.request_id} {record['status']}: {record['error']}"
        return True


@dataclasses.dataclass
class Report:
    """Results and timings of one run, printed after the services are stopped."""

    changes: list
    url: str
    started_service: bool
    addresses: list
    port: int
    setup_seconds: float
    changes_seconds: float
    wait_seconds: float
    failed_fetch_count: int


def progress(message):
    """Print a progress line to stderr, so stdout contains only the report."""
    print(f"digaas demo: {message}", file=sys.stderr, flush=True)


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def run(args):
    """Run the demo and print its report; return the exit status.

    The status is 0 when every poll request completed, 1 when one did not
    or the demo failed, and 128 + the signal number after SIGINT or SIGTERM.
    """
    logging.basicConfig(level=logging.WARNING,
                        format="digaas demo: %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="digaas-demo-"))
    signal_numbers = []

    try:
        with _sigterm_as_keyboard_interrupt(signal_numbers):
            report = _run_in(args, workdir)
    except KeyboardInterrupt:
        signal_number = signal_numbers[0] if signal_numbers else signal.SIGINT
        progress(f"interrupted by {signal.Signals(signal_number).name};"
                 " BIND9 and digaas are stopped")
        return 128 + signal_number
    except (DemoError, localbind.LocalBindError, RuntimeError,
            requests.RequestException) as error:
        progress(f"failed: {error}")
        return 1
    finally:
        if args.keep:
            progress(f"kept the working files in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print_report(args, report, time.monotonic() - started, workdir)
    return 0 if all(change.completed for change in report.changes) else 1


class _sigterm_as_keyboard_interrupt:
    """Context manager that turns SIGTERM into KeyboardInterrupt, so cleanup runs.

    It records the signal number in signal_numbers. Outside the main thread,
    where Python cannot set signal handlers, it does nothing.
    """

    def __init__(self, signal_numbers):
        self.signal_numbers = signal_numbers
        self.previous_handler = None

    def _handle(self, signal_number, frame):
        self.signal_numbers.append(signal_number)
        raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc_info):
        if self.previous_handler is not None:
            signal.signal(signal.SIGTERM, self.previous_handler)


def _run_in(args, workdir):
    setup_started = time.monotonic()
    bind = localbind.LocalBind(str(workdir / "bind"), listen_ipv6=ipv6_loopback_available())
    service = None

    try:
        progress(f"starting BIND9 in {bind.workdir}")
        bind.start()
        progress(f"BIND9 is ready on {' and '.join(bind.addresses)} port {bind.port}")

        url = args.url
        if url is None:
            service_dir = workdir / "digaas"
            service_dir.mkdir()
            service = localservice.LocalService(service_dir)
            progress(f"starting digaas with sqlite in {service_dir}")
            _start_service(service)
            url = service.url
        client = DigaasClient(url)
        client.check()
        progress(f"digaas is ready at {url}")

        changes = plan_changes(args.zones, secrets.token_hex(3), args.rate_per_second,
                               zone_gap_seconds(args.frequency_seconds))
        demo_run = DemoRun(args, bind, client, bind.addresses, changes, service)
        setup_seconds = time.monotonic() - setup_started
        progress(f"making {len(changes)} changes on {args.zones} zones at"
                 f" {args.rate_per_second:g} changes/s, which takes about"
                 f" {changes[-1].planned_offset_seconds:.0f} s")

        changes_started = time.monotonic()
        demo_run.make_changes()
        changes_seconds = time.monotonic() - changes_started

        progress("all changes are made, waiting for the poll results")
        wait_started = time.monotonic()
        demo_run.wait_for_results()
        wait_seconds = time.monotonic() - wait_started

        return Report(changes=changes, url=url, started_service=service is not None,
                      addresses=bind.addresses, port=bind.port, setup_seconds=setup_seconds,
                      changes_seconds=changes_seconds, wait_seconds=wait_seconds,
                      failed_fetch_count=demo_run.failed_fetch_count)
    finally:
        _stop(service, bind)


def _start_service(service):
    # NOTE: LocalService.start() retries only on ConnectionError. A GET / that
    # times out while uwsgi loads the app ends the start, so the log tail
    # below is the user's only hint at the cause.
    try:
        service.start()
    except requests.RequestException as error:
        raise DemoError(f"digaas did not start: GET {service.url}/ failed: {error};"
                        f" last lines of {service.log_path}:\n"
                        f"{service.log_tail(SERVICE_LOG_TAIL_LINES)}") from None


def _stop(service, bind):
    # Each stop runs even when the other fails, so neither process outlives the demo.
    if service is not None:
        progress("stopping digaas")
        try:
            service.stop()
        except RuntimeError as error:
            LOG.error("stopping digaas failed: %s", error)

    progress("stopping BIND9")
    try:
        bind.stop()
    except localbind.LocalBindError as error:
        LOG.error("stopping BIND9 in %s failed: %s", bind.workdir, error)


def print_report(args, report, total_seconds, workdir):
    changes = report.changes
    service_text = "started for this run, sqlite" if report.started_service else "from --url"
    gap_seconds = zone_gap_seconds(args.frequency_seconds)
    lag = pipeline_lag_zones(args.zones, args.rate_per_second, gap_seconds)
    print(f"digaas demo: {args.zones} zones, {len(changes)} changes at"
          f" {args.rate_per_second:g} changes/s; updates trail creates and deletes trail"
          f" updates by {lag} zones; a zone's changes are at least {gap_seconds:g} s apart")
    print(f"poll requests: frequency {args.frequency_seconds:g} s, timeout"
          f" {args.timeout_seconds:g} s, "
          + ("posted before the change" if args.post_first else "posted after the change"))
    print(f"digaas: {report.url} ({service_text});"
          f" BIND9: {' and '.join(report.addresses)} port {report.port}")
    print(describe_schedule(changes))
    print(f"run took {total_seconds:.3f} s: setup {report.setup_seconds:.3f} s,"
          f" changes {report.changes_seconds:.3f} s,"
          f" waiting for results {report.wait_seconds:.3f} s")
    print()

    # Nearest rank: the median and p90 are durations that were measured,
    # never interpolated between two of them.
    print("durations in seconds from start_time to the answer that showed the change;"
          " median and p90 by nearest rank")
    summaries = [summarize(change_type, [change for change in changes
                                         if change.change_type == change_type])
                 for change_type in CHANGE_TYPES]
    summaries.append(summarize("all", changes))
    print(format_table(summaries))

    problems = [change for change in changes if not change.completed]
    if problems:
        print()
        print(f"{len(problems)} changes have no COMPLETED poll request:")
        for change in problems[:MAX_LISTED_PROBLEMS]:
            print(f"  {change.change_type} {change.zone_name}: {change.problem or 'no result'}")
        if len(problems) > MAX_LISTED_PROBLEMS:
            print(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        if not args.keep:
            print("rerun with --keep to inspect named.log and uwsgi.log")

    if report.failed_fetch_count:
        print(f"{report.failed_fetch_count} GET /requests/{{id}} calls failed and were retried")
    if args.keep:
        print(f"working files kept in {workdir}")


def describe_schedule(changes):
    """Return one line that states whether the changes kept to their planned start times."""
    latenesses = [change.lateness_seconds for change in changes
                  if change.lateness_seconds is not None]
    started = len(latenesses)
    max_lateness = max(latenesses, default=0.0)
    late_count = sum(1 for lateness in latenesses if lateness > LATENESS_TOLERANCE_SECONDS)
    planned_text = f"planned over {changes[-1].planned_offset_seconds:.3f} s"

    if late_count:
        return (f"schedule: fell behind: {late_count} of {started} changes started more than"
                f" {LATENESS_TOLERANCE_SECONDS:g} s after their planned time"
                f" (max {max_lateness:.3f} s late, {planned_text}); lower --rate")
    return (f"schedule: kept up: all {started} changes started within"
            f" {LATENESS_TOLERANCE_SECONDS:g} s of their planned time"
            f" (max {max_lateness:.3f} s late, {planned_text})")
