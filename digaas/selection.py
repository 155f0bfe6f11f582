"""Read the query string of the listing, stats and plot endpoints into a RequestQuery."""

import ipaddress
import math

from digaas import model
from digaas import storage

MAX_PAGE_SIZE = 100000
FORMATS = ("json", "csv")


def _single(params, name):
    """Return a query parameter's one value, or None; raise if it is repeated."""
    value = params.get(name)
    if isinstance(value, list):
        raise model.InvalidField(name, value, "must be given at most once")
    return value


def _number(params, name, required):
    text = _single(params, name)
    if text is None:
        if required:
            raise model.MissingField(name, "give the window as unix seconds, for example"
                                     " start=1421867419&end=1421871019",
                                     kind="query parameter")
        return None
    try:
        value = float(text)
    except ValueError:
        raise model.InvalidField(name, text, "must be unix seconds, such as 1421867419.5") from None
    if not math.isfinite(value):
        raise model.InvalidField(name, text, "must be a finite number of unix seconds")
    if abs(value) > model.MAX_START_TIME:
        raise model.InvalidField(
            name, text, f"must be unix seconds from -{model.MAX_START_TIME} to"
                        f" {model.MAX_START_TIME} (year 9999); a value this large is often"
                        " milliseconds, so divide it by 1000")
    return value


def _integer(params, name, default, minimum, maximum):
    text = _single(params, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise model.InvalidField(name, text, f"must be an integer from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise model.InvalidField(name, text, f"must be an integer from {minimum} to {maximum}")
    return value


def _choice(params, name, choices):
    value = _single(params, name)
    if value is not None and value not in choices:
        raise model.InvalidField(name, value, "must be one of " + ", ".join(choices))
    return value


WINDOW_PARAMETERS = ("start", "end", "nameserver", "condition")
LISTING_PARAMETERS = WINDOW_PARAMETERS + ("status", "format", "offset", "limit")


def check_known(params, known):
    """Raise InvalidField for a query parameter the endpoint does not take."""
    for name in params:
        if name not in known:
            raise model.InvalidField("parameter", name,
                                     "accepted query parameters are " + ", ".join(known))


def parse_query(params, *, window_required, paging=False):
    """Return the RequestQuery that a query string (a dict of str) selects.

    start and end are unix seconds, and the window is start <= start_time <
    end. Raises model.InvalidField (a 400) naming the parameter.
    """
    start = _number(params, "start", window_required)
    end = _number(params, "end", window_required)
    if start is not None and end is not None and end < start:
        raise model.InvalidField("end", params["end"],
                                 f"must not be before start ({params['start']})")

    nameserver = _single(params, "nameserver")
    if nameserver is not None:
        try:
            nameserver = str(ipaddress.ip_address(nameserver))
        except ValueError:
            raise model.InvalidField("nameserver", nameserver,
                                     "must be an IPv4 or IPv6 address") from None

    offset = limit = None
    if paging:
        offset = _integer(params, "offset", 0, 0, 2**62)
        limit = _integer(params, "limit", None, 1, MAX_PAGE_SIZE)

    return storage.RequestQuery(
        start=-math.inf if start is None else start,
        end=math.inf if end is None else end,
        status=_choice(params, "status", model.STATUSES),
        nameserver=nameserver,
        condition=_choice(params, "condition", model.CONDITIONS),
        offset=offset or 0,
        limit=limit,
    )


def parse_format(params):
    return _choice(params, "format", FORMATS) or "json"
