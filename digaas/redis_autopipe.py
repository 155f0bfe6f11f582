"""One Redis connection that a worker's greenlets share, with their commands sent in batches."""

import logging

import gevent
import hiredis
import redis

LOG = logging.getLogger(__name__)


class _Unit:
    """The commands of one caller, which go out together and in order."""

    __slots__ = ("packed", "reply_count", "waiter")

    def __init__(self, packed, reply_count, waiter):
        self.packed = packed
        self.reply_count = reply_count
        self.waiter = waiter


class AutoPipeline:
    """Send the commands of many greenlets over one connection, in batches.

    A caller queues its commands and waits. One I/O greenlet writes all that
    is queued with one send, reads the replies in order and hands each caller
    its own. Commands queued while a batch is in flight go out in the next
    batch. Compared with redis-py's client, a command costs no connection
    pool checkout and no readiness poll, and a busy worker makes one round
    trip for many commands.

    Callers must be greenlets, not the hub, because they wait for the reply.
    """

    def __init__(self, connection):
        # An unconnected redis-py connection. It connects on the first send
        # (AUTH, SELECT and TLS as its URL says) and again after a failure.
        self._connection = connection
        self._queued = []
        self._io = None
        # Writes to the connection so far, each with every command queued
        # at that moment.
        self.batches_sent = 0

    def execute(self, commands):
        """Send commands, each a tuple of arguments, and return their replies in a list.

        The commands reach Redis one after the other, with no other caller's
        command between them, so MULTI ... EXEC in one call is a transaction.
        A Redis error reply is a redis.ResponseError in the list. A failed
        connection raises redis.ConnectionError or redis.TimeoutError, and
        then Redis may or may not have run the commands.
        """
        waiter = gevent.hub.Waiter()
        packed = b"".join([hiredis.pack_command(command) for command in commands])
        self._queued.append(_Unit(packed, len(commands), waiter))
        if self._io is None:
            self._io = gevent.spawn(self._serve)
            self._io.link_exception(_log_io_failure)

        result = waiter.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self):
        self._connection.disconnect()

    def _serve(self):
        loop = gevent.get_hub().loop
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                self._send_batch(batch, loop)
        finally:
            # Empty unless this greenlet was killed or failed: then its
            # callers get an error instead of waiting for ever.
            for unit in self._queued:
                loop.run_callback(unit.waiter.switch, redis.ConnectionError(
                    "the Redis I/O greenlet stopped before sending this command"))
            self._queued = []
            self._io = None

    def _send_batch(self, batch, loop):
        delivered = 0
        try:
            self._connection.send_packed_command(
                [b"".join([unit.packed for unit in batch])], check_health=False)
            self.batches_sent += 1
            for unit in batch:
                replies = [self._read_reply() for _ in range(unit.reply_count)]
                loop.run_callback(unit.waiter.switch, replies)
                delivered += 1
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # redis-py has closed the connection, and the next batch reopens it.
            for unit in batch[delivered:]:
                loop.run_callback(unit.waiter.switch, type(error)(str(error)))
        except BaseException as error:
            self._connection.disconnect()
            for unit in batch[delivered:]:
                loop.run_callback(unit.waiter.switch, redis.ConnectionError(
                    f"Redis connection closed after an unexpected error: {error!r}"))
            raise

    def _read_reply(self):
        try:
            return self._connection.read_response()
        except redis.ResponseError as error:
            return error


def _log_io_failure(io_greenlet):
    LOG.error("the Redis I/O greenlet failed; its callers got a ConnectionError",
              exc_info=io_greenlet.exc_info)
