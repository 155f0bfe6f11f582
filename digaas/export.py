"""Stream stored requests as CSV or JSON, every field, for pandas and friends.

pandas.read_csv(url) and pandas.read_json(url) load either format directly.
"""

import csv
import io
import json

import gevent

from digaas import model

# Rows written per chunk of the HTTP response. After each chunk the greenlet
# yields, so a large export does not stall the polls of the same process.
CHUNK_ROWS = 1000


def csv_chunks(requests):
    """Yield CSV bytes: a header of model.FIELD_NAMES, then one line per request.

    A None value is an empty cell; floats are written with repr, so they
    read back exactly.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(model.FIELD_NAMES)

    for count, request in enumerate(requests, start=1):
        values = request.to_dict()
        writer.writerow(["" if values[name] is None else values[name]
                         for name in model.FIELD_NAMES])
        if count % CHUNK_ROWS == 0:
            yield _drain(buffer)
            gevent.sleep(0)

    yield _drain(buffer)


def json_chunks(requests):
    """Yield the bytes of one JSON array with an object per request."""
    buffer = io.StringIO()
    buffer.write("[")

    for count, request in enumerate(requests, start=1):
        if count > 1:
            buffer.write(",\n")
        buffer.write(json.dumps(request.to_dict()))
        if count % CHUNK_ROWS == 0:
            yield _drain(buffer)
            gevent.sleep(0)

    buffer.write("]\n")
    yield _drain(buffer)


def _drain(buffer):
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
