"""Settings of digaas.

Every UPPERCASE name below can be overridden with an environment variable
named ``DIGAAS_<NAME>``, for example ``DIGAAS_STORAGE=redis``. Only the
server entry point (``digaas.wsgi``) and the command line call :func:`load`;
the rest of the code receives the settings it needs as arguments.
"""

import os
import types

# Address and port the HTTP server listens on, as HOST:PORT.
LISTEN = "127.0.0.1:9090"

# Number of uwsgi worker processes. Each one polls the requests it accepted.
PROCESSES = 1

# HTTP requests one uwsgi worker serves at once (uwsgi's gevent async cores).
GEVENT_ASYNC_CORES = 10000

# Storage backend: "sqlite" (an embedded file, the default) or "redis".
STORAGE = "sqlite"

# Path of the sqlite database file, relative to the working directory unless
# absolute. The file and its WAL files are created on first use.
SQLITE_PATH = "digaas.sqlite3"

# How long a sqlite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_SECONDS = 10.0

# Redis connection URL, used when STORAGE is "redis".
REDIS_URL = "redis://127.0.0.1:6379/0"

# Timeout of one Redis command or connection attempt, so that a hung Redis
# turns into a 503 instead of a request that never ends.
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0

# Prefix of every Redis key digaas writes, so several deployments can share
# one Redis database.
REDIS_KEY_PREFIX = "digaas"

# Timeout of one DNS query. A query never runs past its poll's deadline, so
# the effective timeout can be shorter.
DNS_QUERY_TIMEOUT_SECONDS = 1.0

# How often each process adds the query round-trip times it measured to
# the latency histograms in storage.
LATENCY_FLUSH_SECONDS = 5.0

# Summaries and plots run in child processes: at most this many at once per
# worker, each for at most ANALYSIS_TIMEOUT_SECONDS.
ANALYSIS_MAX_CONCURRENT = 2
ANALYSIS_TIMEOUT_SECONDS = 600.0

# Most polls one worker process runs at once. Beyond it POST /requests
# answers 503 with Retry-After and stores nothing.
MAX_IN_FLIGHT = 20000

# Networks digaas may send queries to, comma-separated (such as
# "10.0.0.0/8, 2001:db8::/32"). Empty: any address. A request for a
# nameserver outside them gets 403.
NAMESERVER_ALLOW = ""

# Most DNS queries per second that one worker process sends to one
# nameserver. Queries over the cap wait for a free slot, and the wait is
# added to the request's rate_limit_delay_seconds.
MAX_QUERIES_PER_SECOND_PER_NAMESERVER = 10000.0

# Results kept in memory per worker while the storage is unavailable, and
# how often their writing is retried.
MAX_PENDING_RESULTS = 100000
RESULT_RETRY_SECONDS = 1.0

# Bearer token that every endpoint but GET / requires when set. Empty: no
# authentication.
API_TOKEN = ""

# Upper bound accepted for a poll request's "timeout".
MAX_TIMEOUT_SECONDS = 3600.0

# Lower bound accepted for a poll request's "frequency".
MIN_FREQUENCY_SECONDS = 0.1

# Largest request body accepted, in bytes; a larger one gets 413.
MAX_BODY_BYTES = 65536

# Level of the service's log: DEBUG, INFO, WARNING or ERROR.
LOG_LEVEL = "INFO"


class ConfigError(ValueError):
    """A setting's override has a value of the wrong type."""


def _convert(name, default, text):
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(
            f"DIGAAS_{name}={text!r} is not a boolean: use true or false")

    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise ConfigError(
                    f"DIGAAS_{name}={text!r} is not a valid {kind.__name__}"
                    f" (default {default!r})") from None

    return text


def defaults():
    """Return the settings of this module as a name -> value dict."""
    return {name: value for name, value in globals().items()
            if name.isupper() and not name.startswith("_")}


def load(environ=None):
    """Return the settings, with DIGAAS_<NAME> environment overrides applied.

    Raises ConfigError naming the variable when an override cannot be
    converted to the type of the setting's default.
    """
    if environ is None:
        environ = os.environ

    settings = defaults()
    for name, default in settings.items():
        text = environ.get(f"DIGAAS_{name}")
        if text is not None:
            settings[name] = _convert(name, default, text)

    return types.SimpleNamespace(**settings)
