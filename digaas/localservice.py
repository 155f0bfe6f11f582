"""Run a throwaway digaas service (`digaas serve`: uwsgi in gevent mode) on loopback.

Used by `digaas demo` and by the tests.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import requests

from digaas.localbind import free_port

# The directory that holds the digaas package, put on PYTHONPATH so that a
# checkout runs without being installed.
SOURCE_ROOT = pathlib.Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 15.0


class LocalService:
    """One digaas service started with `python -m digaas.cli serve` as a child process."""

    def __init__(self, workdir, *, storage="sqlite", redis_url=None, settings=None, port=None):
        self.workdir = pathlib.Path(workdir)
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.sqlite_path = self.workdir / "digaas.sqlite3"
        self.log_path = self.workdir / "uwsgi.log"
        self.storage = storage
        self.redis_url = redis_url
        self.settings = settings or {}
        self.process = None

    def start(self):
        """Start the service and wait until GET / answers 200; return self."""
        command = [sys.executable, "-m", "digaas.cli", "serve",
                   "--listen", f"127.0.0.1:{self.port}", "--storage", self.storage,
                   "--sqlite-path", str(self.sqlite_path)]
        if self.redis_url:
            command += ["--redis-url", self.redis_url]

        environ = dict(os.environ)
        environ["PYTHONPATH"] = str(SOURCE_ROOT)
        for name, value in self.settings.items():
            environ[f"DIGAAS_{name}"] = str(value)

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=environ, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"digaas serve exited with {self.process.returncode}"
                                   f" during startup:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)

        self.stop()
        raise RuntimeError(f"digaas serve did not answer GET / within"
                           f" {START_TIMEOUT_SECONDS} s:\n{self.log_tail()}")

    def stop(self):
        """Send SIGTERM and wait for the server to exit; return its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode

        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"digaas serve ignored SIGTERM for {STOP_TIMEOUT_SECONDS} s"
                               f" and was killed:\n{self.log_tail()}")

    def log_tail(self, lines=40):
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def post(self, body, **kwargs):
        return requests.post(self.url + "/requests", json=body, timeout=5, **kwargs)

    def get(self, request_id):
        return requests.get(f"{self.url}/requests/{request_id}", timeout=5)

    def wait_until_done(self, request_id, timeout_seconds):
        """Poll GET /requests/{id} until its status leaves ACCEPTED; return the record."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            record = self.get(request_id).json()
            if record["status"] != "ACCEPTED":
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"request {request_id} still ACCEPTED after"
                                     f" {timeout_seconds} s: {record}\n{self.log_tail()}")
            time.sleep(0.05)
