"""Read a request body as strict JSON, with 4xx errors a client can act on."""

import json

import falcon

# Maximum number of digits of an integer in a body. Python refuses to convert integers of
# more than 4300 digits anyway, with a message meant for programmers.
MAX_INTEGER_DIGITS = 100


class _RejectedJson(ValueError):
    """JSON that parses but that digaas does not accept."""


def read_json_body(req, max_body_bytes):
    """Return the request body parsed as JSON, whatever its Content-Type says.

    Harnesses that post with python-requests' data= send no Content-Type, and
    curl -d sends application/x-www-form-urlencoded, so the header is not
    trusted. NaN, Infinity, repeated keys, huge integers and nesting deeper
    than the parser's recursion limit are rejected with a 400.
    """
    if req.content_length is None and "chunked" in (req.get_header("Transfer-Encoding") or ""):
        raise falcon.HTTPLengthRequired(
            title="Chunked body not supported",
            description="the body was sent with Transfer-Encoding: chunked; send it with a"
                        " Content-Length header, as curl -d and python-requests with a str"
                        " or bytes body do")

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
        # As json.loads() does with bytes, but with one decoder for all bodies.
        return _DECODER.decode(data.decode(json.detect_encoding(data), "surrogatepass"))
    except RecursionError:
        raise falcon.HTTPBadRequest(
            title="Invalid poll request",
            description="the body is nested too deeply: send a flat JSON object") from None
    except _RejectedJson as error:
        raise falcon.HTTPBadRequest(
            title="Invalid poll request",
            description=f"the body is rejected: {error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        fix = ("send the poll request's fields as one JSON object, as python-requests'"
               " json= and curl -d '{...}' do")
        if _looks_like_form(data):
            description = f"the body looks form-encoded (name=value&...): {fix}"
        else:
            description = f"the body is not valid JSON ({error}): {fix}"
        raise falcon.HTTPBadRequest(title="Invalid poll request", description=description) from None


def _looks_like_form(data):
    first = data.lstrip()[:1]
    return b"=" in data and first not in (b"{", b"[", b'"')


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed: use a finite number")


def _parse_integer(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _RejectedJson(f"an integer with {digits} digits is too long:"
                            f" at most {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _reject_repeated_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise _RejectedJson(f"key {key!r} appears more than once; send each key once")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_integer,
                            object_pairs_hook=_reject_repeated_keys)
