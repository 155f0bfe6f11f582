"""A bare falcon app that bench_api.py serves beside digaas, as the baseline of the web stack.

POST /requests parses the JSON body and returns it with 202, and
GET /requests/{id} returns a fixed record of the size and shape digaas
returns. Neither touches storage or DNS. bench_api.py starts it with:

    uwsgi ... --pythonpath bench --module echo_app:application

idle_wait_application is the same app, except that each request first
waits until the gevent loop is idle (at most IDLE_WAIT_SECONDS), as a
digaas request does when it waits for a Redis batch or a group commit.
That wait alone changes the rate of the web stack: with wrk on the same
2-core machine the waiting app served about 1.4 times the bare one's
GETs, because the worker then sends its responses in bursts and wakes
wrk's threads less often. In a perf record of the worker, run by hand,
the kernel's wake-up path fell from 17 % to 3 % of the samples.
bench_api.py runs both apps, so that a digaas endpoint that waits can
also be compared with a baseline that waits the same way.
"""

import json

import falcon
import gevent

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

# The maximum wait of idle_wait_application, as in redis_autopipe.py
# (groupcommit.py waits at most 6 ms).
IDLE_WAIT_SECONDS = 0.002


def wait_for_idle_loop():
    with gevent.Timeout(IDLE_WAIT_SECONDS, False):
        gevent.idle()


class EchoCollection:
    def __init__(self, wait):
        self._wait = wait

    def on_post(self, req, resp):
        self._wait()
        body = json.loads(req.bounded_stream.read(MAX_BODY_BYTES))
        resp.status = falcon.HTTP_202
        resp.location = "/requests/" + FIXED_RECORD["id"]
        resp.media = body


class FixedRecord:
    def __init__(self, wait):
        self._wait = wait

    def on_get(self, req, resp, request_id):
        self._wait()
        resp.media = FIXED_RECORD


def create_app(wait_for_idle=False):
    wait = wait_for_idle_loop if wait_for_idle else (lambda: None)
    app = falcon.App()
    app.add_route("/requests", EchoCollection(wait))
    app.add_route("/requests/{request_id}", FixedRecord(wait))
    return app


application = create_app()
idle_wait_application = create_app(wait_for_idle=True)
