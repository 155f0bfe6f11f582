"""Shared UDP sockets that carry the DNS queries of every poll of a process.

A socket per query costs a socket(), connect() and close() each time, about
ten times the cost of the send and receive themselves. Instead each
(nameserver, port) gets a few connected, non-blocking UDP sockets, watched
by the gevent loop. A query picks a free 16-bit id on a socket and sends.
The loop's read callback hands each reply to the query with that id, if the
reply echoes the query's question, and a timer ends the query otherwise. The connected socket makes the kernel drop
datagrams from any other source address or port.

Replies that match no waiting query are stray: with an id that timed out a
moment ago they are late answers and are dropped; others (another id,
another question, unparsable data) are counted in the ignored replies of
every query then waiting on the socket.
"""

import _socket
import collections
import errno
import logging
import random
import socket
import time

from gevent import get_hub
from gevent.hub import Waiter

LOG = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 65535

# Receive buffer asked for each socket. The kernel allocates it only as
# datagrams arrive, and caps it at net.core.rmem_max.
RECEIVE_BUFFER_BYTES = 4 << 20

# Ids of recent timeouts remembered per socket, so that their late answers
# are not counted as stray replies.
LATE_IDS_REMEMBERED = 4096

# Sockets (so source ports) per nameserver and port, used in turn. Servers
# such as BIND 9 read with one SO_REUSEPORT socket per thread, and the kernel
# picks that socket by the client's address and port: queries from a single
# port all land on one thread and overflow its socket buffer.
SOCKETS_PER_NAMESERVER = 8

# A socket takes at most this many queries at once, so that free ids stay
# easy to find among the 65536; beyond it more sockets are opened.
MAX_PENDING_PER_SOCKET = 16384

class Reply:
    """The end of a query's wait: a matching reply, or a failure."""

    __slots__ = ("wire", "received_at", "failure", "ignored_replies")

    def __init__(self, wire=None, received_at=0.0, failure=None):
        self.wire = wire
        self.received_at = received_at
        self.failure = failure
        self.ignored_replies = 0


class _Pending:
    __slots__ = ("question", "callback", "timer", "ignored_replies")

    def __init__(self, question, callback, timer):
        self.question = question
        self.callback = callback
        self.timer = timer
        self.ignored_replies = 0

    def finish(self, reply):
        self.timer.close()
        reply.ignored_replies = self.ignored_replies
        self.callback(reply)


class _Channel:
    """One connected UDP socket to one nameserver and port."""

    def __init__(self, loop, nameserver, port):
        family = socket.AF_INET6 if ":" in nameserver else socket.AF_INET
        # The unpatched socket type: the gevent loop watches it directly.
        self.sock = _socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        self.sock.setblocking(False)
        self.sock.connect((nameserver, port))
        self.pending = {}
        self.late_ids = collections.OrderedDict()
        self.stray_replies = 0
        self._watcher = loop.io(self.sock.fileno(), 1)
        self._watcher.start(self._on_readable)

    def close(self):
        self._watcher.stop()
        self._watcher.close()
        self.sock.close()

    def free_id(self):
        while True:
            query_id = random.getrandbits(16)
            if query_id not in self.pending and query_id not in self.late_ids:
                return query_id

    def forget_late(self, query_id):
        self.late_ids[query_id] = None
        if len(self.late_ids) > LATE_IDS_REMEMBERED:
            self.late_ids.popitem(last=False)

    def _on_readable(self):
        # Runs in the hub: read every datagram that is there, then return.
        while True:
            try:
                wire = self.sock.recv(MAX_MESSAGE_BYTES)
            except BlockingIOError:
                return
            except OSError as error:
                # The kernel reports an ICMP error (port unreachable, ...) on
                # the connected socket. It cannot be tied to one query, so
                # every query waiting on the socket fails with it.
                self._fail_all(f"network error: {error.strerror or error}")
                return
            self._dispatch(wire, time.time())

    def _dispatch(self, wire, received_at):
        if len(wire) >= 12 and wire[2] & 0x80:
            query_id = (wire[0] << 8) | wire[1]
            pending = self.pending.get(query_id)
            if pending is not None and _echoes_question(wire, pending.question):
                del self.pending[query_id]
                pending.finish(Reply(wire, received_at))
                return
            if pending is None and query_id in self.late_ids:
                return

        self.stray_replies += 1
        for pending in self.pending.values():
            pending.ignored_replies += 1

    def _fail_all(self, failure):
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            entry.finish(Reply(failure=failure))

    def time_out(self, query_id):
        pending = self.pending.pop(query_id, None)
        if pending is not None:
            self.forget_late(query_id)
            pending.finish(Reply(failure="timeout"))


def _echoes_question(wire, question):
    """Check that a reply carries the query's question (names compare without case).

    A reply of rcode FORMERR, SERVFAIL, NOTIMP or REFUSED may leave the
    question out, as dnspython also accepts.
    """
    question_count = (wire[4] << 8) | wire[5]
    if question_count == 0:
        return (wire[3] & 0x0F) in (1, 2, 4, 5)
    end = 12 + len(question)
    return question_count == 1 and wire[12:end].lower() == question


class UdpTransport:
    """The shared UDP sockets of one process, a few per (nameserver, port)."""

    def __init__(self):
        self._channels = {}
        self._turns = {}

    def send(self, query_wire, question, nameserver, port, timeout_seconds, callback):
        """Send query_wire (its id is replaced); call callback(reply) once, later.

        question is the query's question section, lower-cased. The callback
        runs in the gevent loop (so it must not block) with a Reply: the
        matching reply, or a failure such as "timeout" after timeout_seconds.
        """
        loop = get_hub().loop
        channel = self._channel(nameserver, port)
        query_id = channel.free_id()
        try:
            channel.sock.send(query_id.to_bytes(2, "big") + query_wire[2:])
        except OSError as error:
            loop.run_callback(callback, Reply(failure=f"network error: {_describe(error)}"))
            return

        timer = loop.timer(timeout_seconds)
        channel.pending[query_id] = _Pending(question, callback, timer)
        # update: the loop's idea of now may be stale after a long callback.
        timer.start(channel.time_out, query_id, update=True)

    def query(self, query_wire, question, nameserver, port, timeout_seconds):
        """Send query_wire and wait, in this greenlet, for the Reply that send() gives."""
        waiter = Waiter()
        self.send(query_wire, question, nameserver, port, timeout_seconds, waiter.switch)
        return waiter.get()

    def close(self):
        for channels in self._channels.values():
            for channel in channels:
                channel.close()
        self._channels.clear()

    def _channel(self, nameserver, port):
        key = (nameserver, port)
        channels = self._channels.get(key)
        if channels is None:
            channels = self._channels[key] = []
            self._turns[key] = 0

        turn = self._turns[key] = self._turns[key] + 1
        if len(channels) < SOCKETS_PER_NAMESERVER:
            return self._open(channels, nameserver, port)
        for offset in range(len(channels)):
            channel = channels[(turn + offset) % len(channels)]
            if len(channel.pending) < MAX_PENDING_PER_SOCKET:
                return channel
        return self._open(channels, nameserver, port)

    @staticmethod
    def _open(channels, nameserver, port):
        channel = _Channel(get_hub().loop, nameserver, port)
        channels.append(channel)
        LOG.debug("opened UDP socket %d to %s port %s", len(channels), nameserver, port)
        return channel


def _describe(error):
    if error.errno == errno.EAGAIN:
        return "send buffer full"
    return error.strerror or str(error)
