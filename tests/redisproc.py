"""A real redis-server on a loopback port, which tests may stop and start again."""

import shutil
import subprocess
import time

import redis

from digaas.localbind import free_port

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class RedisProcess:
    """redis-server on the same port at every start, with or without persistence.

    With persistence (an append-only file in data_dir), a stop and start keeps
    the data, as a production Redis does.
    """

    def __init__(self, data_dir, persistent=False):
        self.data_dir = data_dir
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = data_dir / "redis.log"
        self._process = None

    @property
    def pid(self):
        """Process id of the running redis-server, or None when it is not running."""
        return None if self._process is None else self._process.pid

    def start(self):
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server not found in PATH; install it"
                               " (on Debian: apt-get install redis-server)")
        command = [executable, "--bind", "127.0.0.1", "--port", str(self.port),
                   "--save", "", "--appendonly", "yes" if self.persistent else "no",
                   "--dir", str(self.data_dir),
                   "--logfile", str(self.log_path), "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        return self

    def stop(self):
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with status"
                                       f" {self._process.returncode} during startup; log"
                                       f" {self.log_path}:\n{self.log_tail()}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"redis-server at {self.url} did not answer PING within"
                                       f" {START_TIMEOUT_SECONDS} s; log {self.log_path}:\n"
                                       f"{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def log_tail(self, line_count=20):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(lines[-line_count:])
