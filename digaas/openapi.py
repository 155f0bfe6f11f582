"""The OpenAPI 3.0.3 document of the digaas HTTP API, and the resource that serves it.

document() builds the description from the same constants that the
validation in model.py and selection.py uses, and takes the limits that
come from the settings as arguments, so the served document matches the
configuration of the server that serves it. Rules that JSON Schema cannot
state without if/then, such as which fields each condition requires, are
written in the descriptions.
"""

from digaas import digdig
from digaas import model
from digaas import plots
from digaas import selection
from digaas import stats

OPENAPI_VERSION = "3.0.3"

# Largest offset of GET /requests, as selection.parse_query checks it.
MAX_OFFSET = 2**62

# Unix seconds of a start_time in the examples: 2014-12-11T22:21:10Z.
EXAMPLE_START_TIME = 1418336470

# The example nameserver is on loopback, as in the README, so that a tool that
# sends the examples (schemathesis, Swagger UI) makes digaas query only its own host.
EXAMPLE_NAMESERVER = "127.0.0.1"
EXAMPLE_PORT = 5300

SECURITY_SCHEME = "bearerAuth"

ERROR_REF = {"$ref": "#/components/schemas/Error"}
RECORD_REF = {"$ref": "#/components/schemas/PollRequestRecord"}


def document(version, *, max_timeout_seconds, min_frequency_seconds, max_body_bytes):
    """Build the OpenAPI document of digaas as a JSON-ready dict.

    version is the service's version (digaas.__version__). The limits are
    the settings MAX_TIMEOUT_SECONDS, MIN_FREQUENCY_SECONDS and
    MAX_BODY_BYTES of the server that serves the document.
    """
    limits = {"max_timeout_seconds": max_timeout_seconds,
              "min_frequency_seconds": min_frequency_seconds,
              "max_body_bytes": max_body_bytes}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "digaas",
            "version": version,
            "description": (
                "Dig as a Service: measures how long a DNS change takes to reach a"
                " nameserver. POST /requests starts a poll in the background and"
                " returns 202 at once, and GET /requests/{request_id} reads its result."
                " Every error is a JSON object with title and description."),
        },
        "security": [{SECURITY_SCHEME: []}],
        "paths": {
            "/": {"get": _root_operation()},
            "/openapi.json": {"get": _openapi_operation()},
            "/metrics": {"get": _metrics_operation()},
            "/requests": {"post": _create_operation(limits), "get": _list_operation()},
            "/requests/{request_id}": {"get": _read_operation()},
            "/stats": {"get": _stats_operation()},
            "/plots/{kind}.png": {"get": _plot_operation()},
        },
        "components": {
            "securitySchemes": {SECURITY_SCHEME: _security_scheme()},
            "schemas": {
                "Error": _error_schema(),
                "PollRequestInput": _input_schema(limits),
                "PollRequestRecord": _record_schema(),
                "Summary": _summary_schema(),
                "GroupSummary": _group_summary_schema(),
                "DurationSummary": _duration_summary_schema(),
                "LatencySummary": _latency_summary_schema(),
            },
            "parameters": _query_parameters(),
            "responses": _error_responses(limits),
        },
    }


class OpenApiResource:
    """GET /openapi.json: the OpenAPI document of this server."""

    def __init__(self, document_dict):
        self._document = document_dict

    def on_get(self, req, resp):
        resp.media = self._document


def _security_scheme():
    return {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "Only checked when the server's API_TOKEN setting is set, which it is not"
            " by default. Then every operation except GET / needs"
            " 'Authorization: Bearer <API_TOKEN>' and returns 401 with a"
            " 'WWW-Authenticate: Bearer' header without it."),
    }


def _json_content(schema, example=None):
    media = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _responses(*names):
    return {str(code): {"$ref": f"#/components/responses/{name}"} for code, name in names}


# Operations


def _root_operation():
    return {
        "operationId": "getService",
        "summary": "Check that the service and its storage are up",
        "security": [],
        "responses": {
            "200": {
                "description": "The service and its storage are up.",
                "content": _json_content({
                    "type": "object",
                    "required": ["service", "version"],
                    "properties": {
                        "service": {"type": "string", "enum": ["digaas"]},
                        "version": {"type": "string"},
                    },
                    "additionalProperties": False,
                }),
            },
            **_responses((503, "ServiceUnavailable")),
        },
    }


def _openapi_operation():
    return {
        "operationId": "getOpenApiDocument",
        "summary": "Read this OpenAPI document",
        "responses": {
            "200": {
                "description": "The OpenAPI document, with the limits of this server.",
                "content": _json_content({"type": "object"}),
            },
            **_responses((401, "Unauthorized")),
        },
    }


def _metrics_operation():
    nullable_seconds = {"type": "number", "nullable": True, "minimum": 0}
    return {
        "operationId": "getMetrics",
        "summary": "Read the poll counters of the worker process that answers",
        "responses": {
            "200": {
                "description": (
                    "Counters of one worker: polls in flight, queries sent, results"
                    " waiting for the storage, poll steps waiting for a later pass of"
                    " the event loop (more than zero when the worker falls behind) and"
                    " how many have waited since the start,"
                    " and how late queries went out against their planned slot"
                    " (seconds). schedule_lag_bins are cumulative counts per histogram"
                    " bin, so two readings subtract."),
                "content": _json_content({
                    "type": "object",
                    "required": ["worker", "in_flight", "queries_sent", "pending_results",
                                 "steps_waiting", "steps_deferred", "schedule_lag_seconds",
                                 "schedule_lag_bins"],
                    "properties": {
                        "worker": {"type": "string"},
                        "in_flight": {"type": "integer", "minimum": 0},
                        "queries_sent": {"type": "integer", "minimum": 0},
                        "pending_results": {"type": "integer", "minimum": 0},
                        "steps_waiting": {"type": "integer", "minimum": 0},
                        "steps_deferred": {"type": "integer", "minimum": 0},
                        "schedule_lag_seconds": {
                            "type": "object",
                            "required": ["count", "median", "p90", "p99", "max"],
                            "properties": {
                                "count": {"type": "integer", "minimum": 0},
                                "median": nullable_seconds,
                                "p90": nullable_seconds,
                                "p99": nullable_seconds,
                                "max": nullable_seconds,
                            },
                            "additionalProperties": False,
                        },
                        "schedule_lag_bins": {
                            "type": "object",
                            "additionalProperties": {"type": "integer", "minimum": 0},
                        },
                    },
                    "additionalProperties": False,
                }),
            },
            **_responses((401, "Unauthorized")),
        },
    }


def _create_operation(limits):
    return {
        "operationId": "createPollRequest",
        "summary": "Start polling a nameserver until a condition holds",
        "description": (
            "The body is parsed as JSON whatever its Content-Type says. It must have a"
            f" Content-Length and at most {limits['max_body_bytes']} bytes. Nothing is"
            " stored unless the status is 202."),
        "requestBody": {
            "required": True,
            "content": _json_content({"$ref": "#/components/schemas/PollRequestInput"}, {
                "nameserver": EXAMPLE_NAMESERVER,
                "port": EXAMPLE_PORT,
                "zone_name": "hello.com.",
                "serial": EXAMPLE_START_TIME + 1,
                "start_time": EXAMPLE_START_TIME,
                "timeout": min(30, limits["max_timeout_seconds"]),
                "frequency": limits["min_frequency_seconds"],
                "condition": model.SERIAL_NOT_LOWER,
            }),
        },
        "responses": {
            "202": {
                "description": "Accepted and stored; polling has started.",
                "headers": {
                    "Location": {
                        "description": "Path of the stored record: /requests/{id}.",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                },
                "content": _json_content(RECORD_REF),
            },
            **_responses((400, "BadRequest"), (401, "Unauthorized"),
                         (403, "NameserverNotAllowed"), (411, "LengthRequired"),
                         (413, "ContentTooLarge"), (503, "CreateUnavailable")),
        },
    }


def _list_operation():
    parameters = ["Start", "End", "Status", "Nameserver", "Condition",
                  "Format", "Limit", "Offset"]
    return {
        "operationId": "listPollRequests",
        "summary": "Export the stored requests of a window as JSON or CSV",
        "description": (
            "Selects the requests with start <= start_time < end, sorted by start_time,"
            " every request when start and end are left out."),
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in parameters],
        "responses": {
            "200": {
                "description": (
                    "The selected requests: a JSON array of records, or with format=csv"
                    " a header line of the field names and one line per request, with"
                    " an empty cell for null."),
                "headers": {
                    "Link": {
                        "description": ("<url>; rel=\"next\" when limit is given and more"
                                        " requests follow this page."),
                        "schema": {"type": "string"},
                    },
                },
                "content": {
                    "application/json": {"schema": {"type": "array", "items": RECORD_REF}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **_responses((400, "BadRequest"), (401, "Unauthorized"),
                         (503, "ServiceUnavailable")),
        },
    }


def _read_operation():
    return {
        "operationId": "getPollRequest",
        "summary": "Read a stored request and its result",
        "parameters": [{
            "name": "request_id",
            "in": "path",
            "required": True,
            "description": "The id from the 202 response, a UUID4.",
            "schema": {"type": "string"},
        }],
        "responses": {
            "200": {"description": "The stored record.", "content": _json_content(RECORD_REF)},
            **_responses((401, "Unauthorized"), (404, "NotFound"),
                         (503, "ServiceUnavailable")),
        },
    }


def _window_parameters():
    return [{"$ref": f"#/components/parameters/{name}"}
            for name in ("RequiredStart", "RequiredEnd", "Nameserver", "Condition")]


def _stats_operation():
    return {
        "operationId": "getStats",
        "summary": "Summarize the requests and query latencies of a window",
        "parameters": _window_parameters(),
        "responses": {
            "200": {
                "description": "Counts and duration statistics, overall and per group.",
                "content": _json_content({"$ref": "#/components/schemas/Summary"}),
            },
            **_responses((400, "BadRequest"), (401, "Unauthorized"),
                         (503, "ServiceUnavailable")),
        },
    }


def _plot_operation():
    kind = {
        "name": "kind",
        "in": "path",
        "required": True,
        "description": "What the plot shows.",
        "schema": {"type": "string", "enum": list(plots.KINDS)},
    }
    return {
        "operationId": "getPlot",
        "summary": "Render a plot of a window as a 1000x600 PNG",
        "parameters": [kind] + _window_parameters(),
        "responses": {
            "200": {
                "description": "The plot; a window without data gives a PNG that says so.",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_responses((400, "BadRequest"), (401, "Unauthorized"), (404, "NotFound"),
                         (503, "ServiceUnavailable")),
        },
    }


# Parameters of the analysis endpoints


def _unix_seconds_parameter(name, required):
    if name == "start":
        meaning = "Start of the window, inclusive"
    else:
        meaning = "End of the window, exclusive"
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": f"{meaning}, in unix seconds. end must not be before start.",
        "schema": {"type": "number", "minimum": -model.MAX_START_TIME,
                   "maximum": model.MAX_START_TIME},
    }


def _query_parameters():
    return {
        "Start": _unix_seconds_parameter("start", False),
        "End": _unix_seconds_parameter("end", False),
        "RequiredStart": _unix_seconds_parameter("start", True),
        "RequiredEnd": _unix_seconds_parameter("end", True),
        "Status": {
            "name": "status",
            "in": "query",
            "description": "Select only the requests with this status.",
            "schema": {"type": "string", "enum": list(model.STATUSES)},
        },
        "Nameserver": {
            "name": "nameserver",
            "in": "query",
            "description": "Select only the requests to this IPv4 or IPv6 address.",
            "schema": _ip_address_schema(),
        },
        "Condition": {
            "name": "condition",
            "in": "query",
            "description": "Select only the requests with this condition.",
            "schema": {"type": "string", "enum": list(model.CONDITIONS)},
        },
        "Format": {
            "name": "format",
            "in": "query",
            "description": "Format of the response body.",
            "schema": {"type": "string", "enum": list(selection.FORMATS), "default": "json"},
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "description": ("Maximum number of requests in the response; without it,"
                            " every selected request."),
            "schema": {"type": "integer", "minimum": 1, "maximum": selection.MAX_PAGE_SIZE},
        },
        "Offset": {
            "name": "offset",
            "in": "query",
            "description": ("Number of selected requests to skip before the first one"
                            " in the response."),
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        },
    }


# Error responses


def _error_schema():
    return {
        "type": "object",
        "required": ["title", "description"],
        "properties": {
            "title": {"type": "string"},
            "description": {"type": "string"},
        },
    }


def _error_response(description, headers=None):
    response = {"description": description, "content": _json_content(ERROR_REF)}
    if headers:
        response["headers"] = headers
    return response


def _retry_after_header():
    return {"Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }}


def _error_responses(limits):
    return {
        "BadRequest": _error_response(
            "Invalid input. The description names the field or parameter, its value"
            " spelled as JSON, and what is allowed."),
        "Unauthorized": _error_response(
            "The server has an API_TOKEN and the request did not send it as a bearer token.",
            {"WWW-Authenticate": {"required": True, "schema": {"type": "string",
                                                               "enum": ["Bearer"]}}}),
        "NameserverNotAllowed": _error_response(
            "The nameserver is outside the networks of the server's NAMESERVER_ALLOW"
            " setting; the description names the address and the setting."),
        "NotFound": _error_response("Nothing has this id or name."),
        "LengthRequired": _error_response(
            "The body was sent with Transfer-Encoding: chunked; send a Content-Length."),
        "ContentTooLarge": _error_response(
            f"The body has more than {limits['max_body_bytes']} bytes."),
        "ServiceUnavailable": _error_response(
            "The storage is unavailable; retry later.", _retry_after_header()),
        "CreateUnavailable": _error_response(
            "The storage is unavailable, or this worker already runs MAX_IN_FLIGHT polls."
            " Nothing was stored; retry later.", _retry_after_header()),
    }


# The poll request


def _ip_address_schema():
    return {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}


def _input_schema(limits):
    max_timeout = limits["max_timeout_seconds"]
    conditions = ", ".join(model.CONDITIONS)
    record_conditions = " and ".join(model.RECORD_CONDITIONS)
    return {
        "type": "object",
        "description": (
            "A request to poll a nameserver until a condition holds. Numbers must be"
            " JSON numbers, keys must not repeat, and null counts as a missing optional"
            f" field. serial is required with {model.SERIAL_NOT_LOWER}. rdatatype is"
            f" required with {record_conditions}, and rdata with {model.RECORD_PRESENT}."
            f" record_name, rdatatype and rdata are rejected with the zone conditions."),
        "required": list(model.REQUIRED_FIELDS),
        "additionalProperties": False,
        "properties": {
            "nameserver": {
                **_ip_address_schema(),
                "description": ("IPv4 or IPv6 address of the nameserver, without brackets,"
                                " port or zone index. Host names are rejected."),
                "example": EXAMPLE_NAMESERVER,
            },
            "port": {
                "type": "integer", "nullable": True, "minimum": 1, "maximum": 65535,
                "default": model.DEFAULT_PORT,
            },
            "zone_name": {
                "type": "string", "minLength": 1,
                "description": "The zone, with or without its trailing dot.",
                "example": "hello.com.",
            },
            "condition": {
                "type": "string",
                "description": (
                    f"One of {conditions}, or the older spelling"
                    f" {model.LEGACY_DATA_PREFIX}<rdata> of {model.RECORD_PRESENT}."),
                "anyOf": [
                    {"enum": list(model.CONDITIONS)},
                    {"pattern": f"^{model.LEGACY_DATA_PREFIX}"},
                ],
            },
            "serial": {
                "type": "integer", "nullable": True, "minimum": 0, "maximum": model.MAX_SERIAL,
                "description": (f"The SOA serial that {model.SERIAL_NOT_LOWER} waits for;"
                                " stored but unused with the other conditions."),
            },
            "record_name": {
                "type": "string", "nullable": True,
                "description": ("Owner of the record set, at or under zone_name; default"
                                " zone_name. Only for the record conditions."),
            },
            "rdatatype": {
                "type": "string", "nullable": True,
                "description": "Record type such as A, MX or TYPE65280, not a query-only type.",
            },
            "rdata": {
                "type": "string", "nullable": True,
                "description": "Record data as in a zone file, parsed as rdatatype.",
            },
            "protocol": {
                "type": "string", "nullable": True,
                "enum": list(digdig.PROTOCOLS) + [None], "default": digdig.UDP,
                "description": "udp (retried over TCP when truncated) or tcp.",
            },
            "start_time": {
                "type": "number", "minimum": 0, "maximum": model.MAX_START_TIME,
                "description": "Unix seconds when the change was made.",
            },
            "timeout": {
                "type": "number", "minimum": 0, "exclusiveMinimum": True,
                "maximum": max_timeout,
                "description": "Seconds to poll, counted from acceptance.",
            },
            "frequency": {
                "type": "number", "minimum": limits["min_frequency_seconds"],
                "maximum": max_timeout,
                "description": "Seconds between queries.",
            },
        },
    }


def _nullable(schema_type, **keywords):
    return {"type": schema_type, "nullable": True, **keywords}


def _record_schema():
    unix_seconds = {"type": "number"}
    return {
        "type": "object",
        "description": ("A stored poll request: its input fields as normalized by"
                        " digaas, its status and its result so far."),
        "required": list(model.FIELD_NAMES),
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "nameserver": {"type": "string"},
            "zone_name": {"type": "string"},
            "start_time": unix_seconds,
            "timeout": {"type": "number"},
            "frequency": {"type": "number"},
            "condition": {"type": "string", "enum": list(model.CONDITIONS)},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "serial": _nullable("integer", minimum=0, maximum=model.MAX_SERIAL),
            "record_name": _nullable("string"),
            "rdatatype": _nullable("string"),
            "rdata": _nullable("string"),
            "protocol": {"type": "string", "enum": list(digdig.PROTOCOLS)},
            "accepted_at": unix_seconds,
            "status": {"type": "string", "enum": list(model.STATUSES)},
            "duration": _nullable("number", description=(
                "Seconds from start_time to the first response that met the condition;"
                " null unless COMPLETED.")),
            "completed_at": _nullable("number", description=(
                "Unix seconds when the response that met the condition arrived.")),
            "last_miss_at": _nullable("number", description=(
                "Unix seconds when the last response that did not meet the condition arrived.")),
            "queries": {"type": "integer", "minimum": 0, "description": "Queries sent."},
            "last_rcode": _nullable("string", description="Rcode of the last response."),
            "last_serial": _nullable("integer", minimum=0, maximum=model.MAX_SERIAL,
                                     description="Last SOA serial seen."),
            "error": _nullable("string", description="Why the request ended ERROR."),
            "rate_limit_delay_seconds": {
                "type": "number", "minimum": 0,
                "description": ("Total seconds the queries of this request waited for the"
                                " per-nameserver query rate cap; 0.0 when none did."),
            },
            "owner": _nullable("string", description=(
                "The digaas worker that polls the request.")),
        },
    }


# Summaries


def _count():
    return {"type": "integer", "minimum": 0}


def _seconds_or_null():
    return _nullable("number", minimum=0)


def _summary_schema():
    group_ref = {"$ref": "#/components/schemas/GroupSummary"}
    bound = _nullable("number", description="Unix seconds; null when open.")
    return {
        "type": "object",
        "required": ["window", "overall", "by_condition", "by_nameserver", "latency"],
        "additionalProperties": False,
        "properties": {
            "window": {
                "type": "object",
                "required": ["start", "end"],
                "additionalProperties": False,
                "properties": {"start": bound, "end": bound},
            },
            "overall": group_ref,
            "by_condition": {
                "type": "object", "additionalProperties": group_ref,
                "description": "One group per condition present in the window.",
            },
            "by_nameserver": {
                "type": "object", "additionalProperties": group_ref,
                "description": "One group per nameserver present in the window.",
            },
            "latency": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/LatencySummary"},
                "description": "DNS query round-trip times per nameserver.",
            },
        },
    }


def _group_summary_schema():
    return {
        "type": "object",
        "required": ["total", "completed", "error", "accepted", "duration"],
        "additionalProperties": False,
        "properties": {
            "total": _count(),
            "completed": _count(),
            "error": _count(),
            "accepted": _count(),
            "duration": {"$ref": "#/components/schemas/DurationSummary"},
        },
    }


def _duration_summary_schema():
    keys = [key for key in stats.DURATION_KEYS if key != "count"]
    properties = {"count": _count()}
    # A duration is negative when start_time is later than the response that
    # met the condition, so only count has a minimum.
    properties.update({key: _nullable("number") for key in keys})
    return {
        "type": "object",
        "description": ("Propagation times of the COMPLETED requests, in seconds;"
                        " null when count is 0. Percentiles interpolate linearly."),
        "required": ["count"] + keys,
        "additionalProperties": False,
        "properties": properties,
    }


def _latency_summary_schema():
    keys = ["min", *stats.LATENCY_FRACTIONS, "max"]
    properties = {"count": _count(), "timeouts": _count()}
    properties.update({key: _seconds_or_null() for key in keys})
    return {
        "type": "object",
        "description": ("Round-trip times in seconds; null when no query was answered."
                        " Percentiles are histogram bin middles, within about 4.5 %."),
        "required": ["count", "timeouts"] + keys,
        "additionalProperties": False,
        "properties": properties,
    }
