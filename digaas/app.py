"""The HTTP API of digaas, built by create_app() around a storage and a poller."""

import dataclasses
import itertools
import json
import logging
import time
import urllib.parse

import falcon

import digaas
from digaas import access
from digaas import export
from digaas import groupcommit
from digaas import jsonbody
from digaas import model
from digaas import offload
from digaas import openapi
from digaas import plots
from digaas import poll
from digaas import selection
from digaas import storage

LOG = logging.getLogger(__name__)


class RootResource:
    def __init__(self, storage_backend):
        self._storage = storage_backend

    def on_get(self, req, resp):
        # Raises StorageError, a 503, when the storage does not respond.
        self._storage.check()
        resp.media = {"service": "digaas", "version": digaas.__version__}


class RequestCollection:
    def __init__(self, storage_backend, poller, config, owner):
        self._storage = storage_backend
        self._poller = poller
        self._config = config
        self._owner = owner
        self._allowed_networks = access.parse_networks(config.NAMESERVER_ALLOW)
        self._group_commit = groupcommit.GroupCommit(storage_backend.create_many)

    def on_post(self, req, resp):
        if len(self._poller) >= self._config.MAX_IN_FLIGHT:
            raise falcon.HTTPServiceUnavailable(
                title="Too many polls in flight",
                description=f"this digaas worker already runs {len(self._poller)} polls,"
                            f" its MAX_IN_FLIGHT; nothing was stored, retry later",
                retry_after=1)

        body = jsonbody.read_json_body(req, self._config.MAX_BODY_BYTES)

        request = model.parse_poll_request(
            body,
            max_timeout_seconds=self._config.MAX_TIMEOUT_SECONDS,
            min_frequency_seconds=self._config.MIN_FREQUENCY_SECONDS,
            now=time.time())
        access.check_nameserver(request.nameserver, self._allowed_networks,
                                self._config.NAMESERVER_ALLOW)
        request.owner = self._owner

        # The stored text is also the response, encoded once.
        json_text = request.to_json()
        self._group_commit.create(request, json_text)
        # TODO: POST reaches 0.36 (sqlite) and 0.38 (Redis) of a bare falcon
        # app's rate on 2 cores, short of the 0.80 target. With the polls in a
        # child process (bench/split_polls.py) it reached 0.61 and 0.56, and
        # the target would need 2.2 and 2.4 cores (BENCHMARKS.md, API).
        self._poller.start(request)

        resp.status = falcon.HTTP_202
        resp.location = f"/requests/{request.id}"
        resp.content_type = falcon.MEDIA_JSON
        resp.data = json_text

    def on_get(self, req, resp):
        selection.check_known(req.params, selection.LISTING_PARAMETERS)
        query = selection.parse_query(req.params, window_required=False, paging=True)
        output_format = selection.parse_format(req.params)

        if query.limit is None:
            # Read the first row now, so that a storage failure is still a
            # 503 and not a response cut short.
            requests = self._storage.iter_requests(query)
            first = next(requests, None)
            rows = requests if first is None else itertools.chain([first], requests)
        else:
            # A page is at most selection.MAX_PAGE_SIZE rows: read it whole,
            # and one more to know whether a next page exists.
            rows = list(self._storage.iter_requests(
                dataclasses.replace(query, limit=query.limit + 1)))
            if len(rows) > query.limit:
                rows = rows[:query.limit]
                params = dict(req.params, offset=str(query.offset + query.limit))
                resp.append_link(f"{req.path}?{urllib.parse.urlencode(params)}", "next")

        if output_format == "csv":
            resp.content_type = "text/csv; charset=utf-8"
            resp.stream = _logged_stream(export.csv_chunks(rows), req)
        else:
            resp.content_type = falcon.MEDIA_JSON
            resp.stream = _logged_stream(export.json_chunks(rows), req)


class RequestResource:
    def __init__(self, storage_backend):
        self._storage = storage_backend

    def on_get(self, req, resp, request_id):
        body = self._storage.get_json(request_id)
        if body is None:
            raise falcon.HTTPNotFound(
                title="Poll request not found",
                description=f"no poll request has id {request_id!r}")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


class MetricsResource:
    def __init__(self, poller, owner):
        self._poller = poller
        self._owner = owner

    def on_get(self, req, resp):
        resp.media = dict(self._poller.metrics(), worker=self._owner)


class StatsResource:
    def __init__(self, offloader):
        self._offloader = offloader

    def on_get(self, req, resp):
        selection.check_known(req.params, selection.WINDOW_PARAMETERS)
        query = selection.parse_query(req.params, window_required=True)
        job = _job(query, kind="stats")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._offloader.run(job)


class PlotResource:
    def __init__(self, offloader):
        self._offloader = offloader

    def on_get(self, req, resp, kind):
        if kind not in plots.KINDS:
            raise falcon.HTTPNotFound(
                title="Plot not found",
                description=f"no plot kind {kind!r}: use one of " + ", ".join(plots.KINDS))
        selection.check_known(req.params, selection.WINDOW_PARAMETERS)
        query = selection.parse_query(req.params, window_required=True)
        resp.content_type = "image/png"
        resp.data = self._offloader.run(_job(query, kind="plot", plot=kind))


def _job(query, **fields):
    return dict(fields, start=query.start, end=query.end,
                nameserver=query.nameserver, condition=query.condition)


def _logged_stream(chunks, req):
    """Pass chunks through, logging a failure that cuts the response short."""
    try:
        yield from chunks
    except storage.StorageError as error:
        LOG.error("%s %s: storage failed while streaming, response cut short: %s",
                  req.method, req.relative_uri, error)


def _handle_invalid_field(req, resp, error, params):
    title = "Invalid poll request" if req.method == "POST" else "Invalid query parameter"
    raise falcon.HTTPBadRequest(title=title, description=str(error))


def _handle_nameserver_not_allowed(req, resp, error, params):
    raise falcon.HTTPForbidden(title="Nameserver not allowed",
                               description=f"{error}; nothing was stored")


def _handle_storage_error(req, resp, error, params):
    LOG.error("%s %s: storage failed: %s", req.method, req.path, error)
    consequence = "nothing was stored, retry later" if req.method == "POST" else "retry later"
    raise falcon.HTTPServiceUnavailable(
        title="Storage unavailable",
        description=f"{error}; {consequence}",
        retry_after=5)


def _handle_offload_error(req, resp, error, params):
    LOG.error("%s %s: %s", req.method, req.relative_uri, error)
    raise falcon.HTTPInternalServerError(
        title="Analysis failed",
        description=f"{error}; the service log has the details")


def _handle_unexpected_error(req, resp, error, params):
    if isinstance(error, falcon.HTTPError):
        raise error
    LOG.exception("%s %s: unexpected error", req.method, req.path)
    raise falcon.HTTPInternalServerError(
        title="Internal server error",
        description="digaas failed to handle this request; the service log has the details")


def _serialize_error(req, resp, error):
    """Write falcon errors as JSON, with a description even where falcon has none."""
    body = error.to_dict()
    if "description" not in body:
        if error.status_code == 404:
            body["description"] = (f"nothing at {req.path}: the endpoints are /, /requests,"
                                   " /requests/{id}, /stats, /plots/{kind}.png, /metrics"
                                   " and /openapi.json")
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            body["description"] = f"{req.method} is not allowed on {req.path}; use {allowed}"
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps(body).encode()


def make_poller(storage_backend, config):
    """Return a Poller over storage_backend with the settings in config."""
    return poll.Poller(
        storage_backend,
        dns_query_timeout_seconds=config.DNS_QUERY_TIMEOUT_SECONDS,
        latency_flush_seconds=config.LATENCY_FLUSH_SECONDS,
        max_queries_per_second_per_nameserver=config.MAX_QUERIES_PER_SECOND_PER_NAMESERVER,
        max_pending_results=config.MAX_PENDING_RESULTS,
        result_retry_seconds=config.RESULT_RETRY_SECONDS)


def create_app(storage_backend, config, poller=None, owner="local:1"):
    """Build the falcon app over a storage backend and the settings in config.

    config has the settings of digaas_config. A Poller over the same storage
    is made unless one is given. owner names this worker in the requests it
    accepts, so that its next start can resume them.
    """
    if poller is None:
        poller = make_poller(storage_backend, config)

    offloader = offload.Offloader(config, max_concurrent=config.ANALYSIS_MAX_CONCURRENT,
                                  timeout_seconds=config.ANALYSIS_TIMEOUT_SECONDS)

    middleware = []
    if config.API_TOKEN:
        middleware.append(access.BearerTokenMiddleware(config.API_TOKEN))

    app = falcon.App(middleware=middleware)
    app.set_error_serializer(_serialize_error)
    app.add_route("/", RootResource(storage_backend))
    app.add_route("/requests", RequestCollection(storage_backend, poller, config, owner))
    app.add_route("/requests/{request_id}", RequestResource(storage_backend))
    app.add_route("/stats", StatsResource(offloader))
    app.add_route("/metrics", MetricsResource(poller, owner))
    app.add_route("/plots/{kind}.png", PlotResource(offloader))
    app.add_route("/openapi.json", openapi.OpenApiResource(openapi.document(
        digaas.__version__, max_timeout_seconds=config.MAX_TIMEOUT_SECONDS,
        min_frequency_seconds=config.MIN_FREQUENCY_SECONDS,
        max_body_bytes=config.MAX_BODY_BYTES)))

    # falcon picks the handler of the most specific class, so Exception only
    # catches what the others do not.
    app.add_error_handler(Exception, _handle_unexpected_error)
    app.add_error_handler(model.InvalidField, _handle_invalid_field)
    app.add_error_handler(storage.StorageError, _handle_storage_error)
    app.add_error_handler(access.NameserverNotAllowed, _handle_nameserver_not_allowed)
    app.add_error_handler(offload.OffloadError, _handle_offload_error)

    return app
