"""Run summaries and plots in a child process, off the gevent loop.

Reading a million rows and rendering a plot take seconds of CPU. Done in a
uwsgi worker, that time would stall every poll of the worker, so the worker
starts `python -m digaas.offload`, writes the job to its stdin as JSON and
waits, cooperatively, for the result on its stdout. The child reads the
storage itself with the same settings as the server.

The child exits with status 0 and the result on stdout, or with 3 when the
storage failed. Any other status is a bug, and stderr has the traceback.
"""

import json
import logging
import os
import sys

import gevent.lock
import gevent.subprocess

import digaas_config
from digaas import latency
from digaas import storage

LOG = logging.getLogger(__name__)

EXIT_STORAGE_ERROR = 3
STDERR_TAIL_CHARACTERS = 2000

# The fields the summaries and plots read from each request.
COLUMNS = ("start_time", "duration", "status", "condition", "nameserver")


class OffloadError(Exception):
    """The child process failed or ran out of time."""


def python_executable():
    """Return the Python that runs the child: this one, also under uwsgi.

    Under uwsgi sys.executable is the uwsgi binary, so the interpreter is
    looked up in sys.exec_prefix, which uwsgi sets to the virtualenv.
    """
    if os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in (f"python{version}", "python3"):
        candidate = os.path.join(sys.exec_prefix, "bin", name)
        if os.path.exists(candidate):
            return candidate
    raise OffloadError(f"no Python {version} found in {sys.exec_prefix}/bin to run"
                       " summaries and plots")


def child_environment(config):
    """Return the environment that gives the child the server's settings and sys.path."""
    environ = dict(os.environ)
    for name in digaas_config.defaults():
        if hasattr(config, name):
            environ[f"DIGAAS_{name}"] = str(getattr(config, name))
    environ["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return environ


class Offloader:
    """Runs jobs in child processes, at most max_concurrent at a time."""

    def __init__(self, config, *, max_concurrent, timeout_seconds):
        self._environment = child_environment(config)
        self._slots = gevent.lock.BoundedSemaphore(max_concurrent)
        self._timeout_seconds = timeout_seconds

    def run(self, job):
        """Run one job and return the bytes it wrote. Raises OffloadError or StorageError."""
        with self._slots:
            process = gevent.subprocess.Popen(
                [python_executable(), "-m", "digaas.offload"], env=self._environment,
                stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE,
                stderr=gevent.subprocess.PIPE)
            try:
                output, errors = process.communicate(json.dumps(job).encode(),
                                                     timeout=self._timeout_seconds)
            except gevent.subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise OffloadError(f"{job['kind']} job timed out after"
                                   f" {self._timeout_seconds} s") from None

        message = errors.decode(errors="replace")[-STDERR_TAIL_CHARACTERS:].strip()
        if process.returncode == EXIT_STORAGE_ERROR:
            raise storage.StorageError(message)
        if process.returncode != 0:
            LOG.error("%s job %s failed with exit status %s: %s", job["kind"], job,
                      process.returncode, message)
            raise OffloadError(f"{job['kind']} job failed with exit status"
                               f" {process.returncode}")
        return output


def run_job(job, backend):
    """Compute one job in this process and return its bytes (the child's work)."""
    # numpy and matplotlib load only in the child, never in the server.
    from digaas import stats

    query = storage.RequestQuery(start=job["start"], end=job["end"],
                                 nameserver=job.get("nameserver"),
                                 condition=job.get("condition"))
    # The latency plot draws only the histograms, so it skips reading the
    # requests, the slow part over a large window.
    rows = () if job.get("plot") == "latency" else backend.iter_columns(query, COLUMNS)
    columns = stats.Columns.from_rows(rows)
    histograms = list(backend.iter_latency(latency.bucket_of(job["start"]), job["end"],
                                           nameserver=job.get("nameserver")))

    if job["kind"] == "stats":
        summary = stats.summarize(columns, job["start"], job["end"])
        summary["latency"] = stats.latency_summary(histograms)
        return json.dumps(summary).encode()

    if job["kind"] == "plot":
        from digaas import plots
        return plots.render(job["plot"], columns, histograms, job["start"], job["end"])

    raise ValueError(f"unknown job kind {job['kind']!r}")


def main():
    job = json.loads(sys.stdin.buffer.read())
    config = digaas_config.load()
    try:
        backend = storage.open_storage(config)
        try:
            output = run_job(job, backend)
        finally:
            backend.close()
    except storage.StorageError as error:
        print(error, file=sys.stderr)
        return EXIT_STORAGE_ERROR

    sys.stdout.buffer.write(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
