"""digaas with its polls in a child process of the uwsgi worker: an experiment, not digaas.

bench_api.py --split-polls serves this beside digaas to measure how far
moving the polls out of the web worker takes POST /requests on a given
machine. The worker serves the digaas app as digaas.wsgi builds it, but its
poller starts nothing. After each group commit, the worker sends the
committed requests' JSON texts, one a line, over a socketpair to a child
process (`python split_polls.py --child FD`). The child runs digaas's
Poller over its own connection to the same storage and writes the results.

It leaves out what the benchmark does not need: resuming after a restart,
MAX_IN_FLIGHT (the worker counts no polls), `/metrics` (empty) and flow
control. The child reads as fast as it can, and the socket buffer keeps
the rest. The child exits when the worker closes its end.
NOTE: nothing restarts a child that dies. The POSTs after that fail with
500 once their rows are stored, and those requests are never polled.

Like digaas.wsgi, importing this module builds the app, because uwsgi loads
the WSGI callable by importing a module.
"""

import gc
import json
import logging
import os
import socket
import subprocess
import sys

LOG = logging.getLogger("split_polls")

READ_BYTES = 1 << 20


class ForwardingStorage:
    """The storage backend, whose create_many also sends the stored texts to the child."""

    def __init__(self, backend, child_socket):
        self._backend = backend
        self._child_socket = child_socket

    def create_many(self, requests, json_texts=None):
        if json_texts is None:
            json_texts = [request.to_json() for request in requests]
        self._backend.create_many(requests, json_texts)

        # After the commit, so that the child's result write finds the row.
        self._child_socket.sendall(b"\n".join(json_texts) + b"\n")

    def __getattr__(self, name):
        return getattr(self._backend, name)


class IdlePoller:
    """A poller that starts nothing, because the child polls."""

    def __len__(self):
        return 0

    def start(self, request):
        return None

    def metrics(self):
        return {}


def create_application():
    import digaas_config
    from digaas import app
    from digaas import storage
    from digaas import wsgi

    config = digaas_config.load()
    wsgi.configure_logging(config.LOG_LEVEL)
    backend = storage.open_storage(config)

    worker_end, child_end = socket.socketpair()
    command = [os.path.join(sys.prefix, "bin", "python"), os.path.abspath(__file__),
               "--child", str(child_end.fileno())]
    child = subprocess.Popen(command, pass_fds=[child_end.fileno()])
    child_end.close()
    LOG.info("polls run in child process %d", child.pid)

    application = app.create_app(ForwardingStorage(backend, worker_end), config, IdlePoller(),
                                 owner=wsgi.owner_of_worker(config, wsgi.worker_id()))
    gc.freeze()
    return application


def run_child(fd):
    from gevent import monkey
    monkey.patch_all()

    import digaas_config
    from digaas import app
    from digaas import model
    from digaas import storage
    from digaas import wsgi

    config = digaas_config.load()
    wsgi.configure_logging(config.LOG_LEVEL)
    backend = storage.open_storage(config)
    poller = app.make_poller(backend, config)
    worker_socket = socket.socket(fileno=fd)
    gc.freeze()

    partial_line = b""
    while True:
        data = worker_socket.recv(READ_BYTES)
        if not data:
            break
        lines = (partial_line + data).split(b"\n")
        partial_line = lines.pop()
        for line in lines:
            poller.start(model.PollRequest.from_dict(json.loads(line)))

    LOG.info("worker closed the socket: stopping %d polls", len(poller))
    poller.kill(timeout_seconds=2)
    backend.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        sys.exit("usage: split_polls.py --child FD (started by the uwsgi worker)")
    run_child(int(sys.argv[2]))
else:
    application = create_application()
