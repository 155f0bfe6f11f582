"""The uwsgi entry point: reads digaas_config and the environment, builds the app.

This is the only module that builds an app when imported, because uwsgi
loads the WSGI callable by importing a module (see uwsgi.ini).
"""

import logging

import digaas
import digaas_config
from digaas import app
from digaas import storage


def configure_logging(level):
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def create_application():
    config = digaas_config.load()
    configure_logging(config.LOG_LEVEL)
    backend = storage.open_storage(config)
    location = backend.path if config.STORAGE == "sqlite" else backend.url
    logging.getLogger(__name__).info(
        "digaas %s started on %s: storage %s at %s, DNS query timeout %s s",
        digaas.__version__, config.LISTEN, config.STORAGE, location,
        config.DNS_QUERY_TIMEOUT_SECONDS)
    return app.create_app(backend, config)


application = create_application()
