"""One Redis connection that a worker's greenlets share, with their commands sent in batches."""

import logging

import gevent
import hiredis
import redis

LOG = logging.getLogger(__name__)

# The replies of a unit that has not been sent and read yet.
_PENDING = object()

# The maximum time a gathering caller waits for others to queue commands.
MAX_GATHER_SECONDS = 0.002


class _Unit:
    """The commands of one caller, which go out together and in order."""

    __slots__ = ("packed", "reply_count", "waiter", "result")

    def __init__(self, packed, reply_count, waiter):
        self.packed = packed
        self.reply_count = reply_count
        self.waiter = waiter
        self.result = _PENDING


class AutoPipeline:
    """Send the commands of many greenlets over one connection, in batches.

    A caller that finds the connection idle sends its commands itself, with
    everything other callers queue meanwhile going out in the next batches.
    Callers that find a batch in flight queue their commands and wait. The
    sender writes a batch with one send, reads the replies in order and
    hands each waiting caller its own. When the first caller has its
    replies and more is queued, a greenlet of this object's own takes over
    the sending, so that no caller waits for the others' commands.

    Compared with redis-py's client, a command costs no connection pool
    checkout and no readiness poll, and a busy worker makes one round trip
    for many commands. Callers must be greenlets, not the hub, because they
    wait for the reply.
    """

    def __init__(self, connection):
        # An unconnected redis-py connection. It connects on the first send,
        # with the AUTH, SELECT and TLS that its URL sets, and again after a
        # failure.
        self._connection = connection
        self._queued = []
        self._sending = False
        # Writes to the connection so far, each with every command queued
        # at that moment.
        self.batches_sent = 0

    def execute(self, commands, gather=False):
        """Send commands, each a tuple of arguments, and return their replies in a list.

        The commands reach Redis one after the other, with no other caller's
        command between them, so MULTI ... EXEC in one call is a transaction.

        With gather, a caller that finds the connection idle first waits
        until the loop is idle, at most MAX_GATHER_SECONDS, so that the
        greenlets made ready meanwhile add their commands to its batch. It
        suits callers that each send little, such as one GET per HTTP
        request. Callers that batched their commands already send at once.

        A Redis error reply is a redis.ResponseError in the list. A failed
        connection raises redis.ConnectionError or redis.TimeoutError, and
        then Redis may or may not have run the commands.
        """
        packed = b"".join([hiredis.pack_command(command) for command in commands])
        if self._sending:
            unit = _Unit(packed, len(commands), gevent.hub.Waiter())
            self._queued.append(unit)
            result = unit.waiter.get()
        else:
            unit = _Unit(packed, len(commands), None)
            self._queued.append(unit)
            self._send_queued(until=unit, gather=gather)
            result = unit.result

        if isinstance(result, BaseException):
            raise result
        return result

    def close(self):
        self._connection.disconnect()

    def _send_queued(self, until=None, gather=False):
        """Send the queued batches until the unit `until` has its replies, or all (None)."""
        self._sending = True
        handed_over = False
        try:
            if gather:
                with gevent.Timeout(MAX_GATHER_SECONDS, False):
                    gevent.idle()
            while self._queued and (until is None or until.result is _PENDING):
                batch, self._queued = self._queued, []
                self._send_batch(batch)
        finally:
            if self._queued and until is not None:
                sender = gevent.spawn(self._send_queued)
                sender.link_exception(_log_sender_failure)
                handed_over = True
            else:
                # Empty unless this sender was killed or failed. Then its
                # callers get an error instead of waiting for ever.
                for unit in self._queued:
                    self._deliver(unit, redis.ConnectionError(
                        "the Redis sender stopped before sending this command"))
                self._queued = []
            if not handed_over:
                self._sending = False

    def _send_batch(self, batch):
        delivered = 0
        try:
            self._connection.send_packed_command(
                [b"".join([unit.packed for unit in batch])], check_health=False)
            self.batches_sent += 1
            # Let the other greenlets run while Redis works. The replies are
            # then mostly in the socket already, and reading them needs no
            # wait on the socket's watcher. In bench_api.py quick runs this
            # cut the worker's CPU per Redis POST from about 280 to 205 us.
            gevent.sleep(0)
            for unit in batch:
                self._deliver(unit, [self._read_reply() for _ in range(unit.reply_count)])
                delivered += 1
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # redis-py has closed the connection, and the next batch reopens
            # it. The commands queued meanwhile fail too: sent now, they
            # could wait a second timeout on a Redis that does not respond.
            failed, self._queued = batch[delivered:] + self._queued, []
            for unit in failed:
                self._deliver(unit, type(error)(str(error)))
        except BaseException as error:
            self._connection.disconnect()
            for unit in batch[delivered:]:
                self._deliver(unit, redis.ConnectionError(
                    f"Redis connection closed after an unexpected error: {error!r}"))
            raise

    def _deliver(self, unit, result):
        unit.result = result
        if unit.waiter is not None:
            # Waiter.switch must run in the hub.
            gevent.get_hub().loop.run_callback(unit.waiter.switch, result)

    def _read_reply(self):
        try:
            return self._connection.read_response()
        except redis.ResponseError as error:
            return error


def _log_sender_failure(sender):
    LOG.error("the Redis sender greenlet failed; its callers got a ConnectionError",
              exc_info=sender.exc_info)
