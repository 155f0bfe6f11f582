"""The HTTP API of digaas, built by create_app() around a storage and a poller."""

import json
import logging
import time

import falcon

import digaas
from digaas import model
from digaas import poll
from digaas import storage

LOG = logging.getLogger(__name__)


class RootResource:
    def on_get(self, req, resp):
        resp.media = {"service": "digaas", "version": digaas.__version__}


class RequestCollection:
    def __init__(self, storage_backend, poller, config):
        self._storage = storage_backend
        self._poller = poller
        self._config = config

    def on_post(self, req, resp):
        body = read_json_body(req, self._config.MAX_BODY_BYTES)

        request = model.parse_poll_request(
            body,
            max_timeout_seconds=self._config.MAX_TIMEOUT_SECONDS,
            min_frequency_seconds=self._config.MIN_FREQUENCY_SECONDS,
            now=time.time())

        self._storage.create(request)
        self._poller.start(request)

        resp.status = falcon.HTTP_202
        resp.location = f"/requests/{request.id}"
        resp.media = request.to_dict()


class RequestResource:
    def __init__(self, storage_backend):
        self._storage = storage_backend

    def on_get(self, req, resp, request_id):
        request = self._storage.get(request_id)
        if request is None:
            raise falcon.HTTPNotFound(
                title="Poll request not found",
                description=f"no poll request has id {request_id!r}")
        resp.media = request.to_dict()


def read_json_body(req, max_body_bytes):
    """Return the request body parsed as JSON, whatever its Content-Type says.

    Harnesses that post with python-requests' data= send no Content-Type, and
    curl -d sends application/x-www-form-urlencoded, so the header is not
    trusted. NaN, Infinity and repeated keys are rejected.
    """
    if req.content_length is not None and req.content_length > max_body_bytes:
        raise falcon.HTTPContentTooLarge(
            title="Request body too large",
            description=f"the body has {req.content_length} bytes;"
                        f" at most {max_body_bytes} are accepted")

    data = req.bounded_stream.read(max_body_bytes + 1)
    if len(data) > max_body_bytes:
        raise falcon.HTTPContentTooLarge(
            title="Request body too large",
            description=f"the body has more than {max_body_bytes} bytes")

    if not data.strip():
        raise falcon.HTTPBadRequest(
            title="Invalid poll request",
            description="the body is empty: send a JSON object with the poll request's fields")

    try:
        return json.loads(data, parse_constant=_reject_constant,
                          object_pairs_hook=_reject_repeated_keys)
    except (ValueError, UnicodeDecodeError) as error:
        raise falcon.HTTPBadRequest(
            title="Invalid poll request",
            description=f"the body is not valid JSON: {error}") from None


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed: use a finite number")


def _reject_repeated_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears more than once")
        result[key] = value
    return result


def _handle_invalid_field(req, resp, error, params):
    raise falcon.HTTPBadRequest(title="Invalid poll request", description=str(error))


def _handle_storage_error(req, resp, error, params):
    LOG.error("%s %s: storage failed: %s", req.method, req.path, error)
    raise falcon.HTTPServiceUnavailable(
        title="Storage unavailable",
        description=f"{error}; nothing was stored, retry later",
        retry_after=5)


def _handle_unexpected_error(req, resp, error, params):
    if isinstance(error, falcon.HTTPError):
        raise error
    LOG.exception("%s %s: unexpected error", req.method, req.path)
    raise falcon.HTTPInternalServerError(
        title="Internal server error",
        description="digaas failed to handle this request; the service log has the details")


def create_app(storage_backend, config, poller=None):
    """Build the falcon app over a storage backend and the settings in config.

    config needs MAX_BODY_BYTES, MAX_TIMEOUT_SECONDS, MIN_FREQUENCY_SECONDS and
    DNS_QUERY_TIMEOUT_SECONDS. A Poller over the same storage is made unless
    one is given.
    """
    if poller is None:
        poller = poll.Poller(storage_backend,
                             dns_query_timeout_seconds=config.DNS_QUERY_TIMEOUT_SECONDS)

    app = falcon.App()
    app.add_route("/", RootResource())
    app.add_route("/requests", RequestCollection(storage_backend, poller, config))
    app.add_route("/requests/{request_id}", RequestResource(storage_backend))

    # falcon picks the handler of the most specific class, so Exception only
    # catches what the others do not.
    app.add_error_handler(Exception, _handle_unexpected_error)
    app.add_error_handler(model.InvalidField, _handle_invalid_field)
    app.add_error_handler(storage.StorageError, _handle_storage_error)

    return app
