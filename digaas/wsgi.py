"""The uwsgi entry point: reads digaas_config and the environment, builds the app.

This is the only module that builds an app when imported, because uwsgi
loads the WSGI callable by importing a module (see uwsgi.ini).
"""

import gc
import logging
import socket

import gevent

import digaas
import digaas_config
from digaas import app
from digaas import storage

LOG = logging.getLogger(__name__)

RESUME_RETRY_SECONDS = 5.0


def configure_logging(level):
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def worker_id():
    """Return the uwsgi worker id (1, 2, ...), stable across respawns; 1 outside uwsgi."""
    try:
        import uwsgi
    except ImportError:
        return 1
    return uwsgi.worker_id()


def owner_of_worker(config, worker):
    return f"{socket.gethostname()}:{config.LISTEN}:{worker}"


def resume_polls(poller, config, worker):
    """Take over this worker's ACCEPTED requests, retrying while the storage is down.

    Worker 1 also takes over the requests of workers that no longer exist,
    after PROCESSES was lowered.
    """
    owner = owner_of_worker(config, worker)
    gone_workers = set()
    if worker == 1:
        prefix = owner_of_worker(config, "")
        gone_workers = {prefix + str(number) for number in range(config.PROCESSES + 1, 1000)}

    while True:
        try:
            poller.resume(owner, adopt=gone_workers.__contains__)
            return
        except storage.StorageError as error:
            LOG.warning("resuming the polls of %s failed, retrying in %s s: %s",
                        owner, RESUME_RETRY_SECONDS, error)
            gevent.sleep(RESUME_RETRY_SECONDS)


def stop_worker(poller, backend):
    """Write the worker's progress, queued results and latencies, then close the storage.

    Closing the last connection to a sqlite file checkpoints its write-ahead
    log and removes the -wal and -shm files.
    """
    LOG.info("worker stopping: saving %d polls in flight to resume at the next start",
             len(poller))
    poller.kill(timeout_seconds=2)
    backend.close()


def create_application():
    config = digaas_config.load()
    configure_logging(config.LOG_LEVEL)
    backend = storage.open_storage(config)
    worker = worker_id()
    poller = app.make_poller(backend, config)
    application = app.create_app(backend, config, poller, owner=owner_of_worker(config, worker))

    location = backend.path if config.STORAGE == "sqlite" else backend.url
    LOG.info("digaas %s worker %s started on %s: storage %s at %s, DNS query timeout %s s",
             digaas.__version__, worker, config.LISTEN, config.STORAGE, location,
             config.DNS_QUERY_TIMEOUT_SECONDS)

    resumer = gevent.spawn(resume_polls, poller, config, worker)
    resumer.link_exception(lambda dead: LOG.error("resuming polls failed",
                                                  exc_info=dead.exc_info))
    try:
        import uwsgi
        uwsgi.atexit = lambda: stop_worker(poller, backend)
    except ImportError:
        pass

    # The modules and the app live as long as the worker. Freezing their
    # objects keeps them out of every full collection, which stops the loop
    # and so delays the polls' queries.
    gc.freeze()
    return application


application = create_application()
