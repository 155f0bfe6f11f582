"""A bare falcon app that bench_api.py serves beside digaas, as the ceiling of the web stack.

POST /requests parses the JSON body and returns it with 202, and
GET /requests/{id} returns a fixed record of the size and shape digaas
returns. Neither touches storage or DNS, so the requests per second of this
app under the same uwsgi settings bound what digaas's endpoints can reach.
bench_api.py starts it with:

    uwsgi ... --pythonpath bench --module echo_app:application
"""

import json

import falcon

# A stored record as digaas returns it for a request that is still polling.
FIXED_RECORD = {
    "id": "c4626675-9d04-4929-8437-5ba694ca8bc0", "nameserver": "127.0.0.1", "zone_name": "z0.api.bench.",
    "start_time": 1796415452.657, "timeout": 2, "frequency": 1, "condition": "serial_not_lower",
    "port": 5300, "serial": 2000, "record_name": None, "rdatatype": None, "rdata": None,
    "protocol": "udp", "accepted_at": 1796415452.6643372, "status": "ACCEPTED", "duration": None,
    "completed_at": None, "last_miss_at": None, "queries": 0, "last_rcode": None,
    "last_serial": None, "rate_limit_delay_seconds": 0.0, "owner": "bench:127.0.0.1:9090:1",
    "error": None,
}

MAX_BODY_BYTES = 65536


class EchoCollection:
    def on_post(self, req, resp):
        body = json.loads(req.bounded_stream.read(MAX_BODY_BYTES))
        resp.status = falcon.HTTP_202
        resp.location = "/requests/" + FIXED_RECORD["id"]
        resp.media = body


class FixedRecord:
    def on_get(self, req, resp, request_id):
        resp.media = FIXED_RECORD


def create_app():
    app = falcon.App()
    app.add_route("/requests", EchoCollection())
    app.add_route("/requests/{request_id}", FixedRecord())
    return app


application = create_app()
