"""A scriptable fake nameserver on loopback for faults a real BIND9 will not produce.

A test decides what goes back for each query: wrong ids, garbage, delays,
silence, truncation, UDP replies from another address, or a TCP stream cut in
the middle of a message.

    with FakeNameserver() as server:
        server.handler = lambda query, protocol: [0.5, response(query, rcode=dns.rcode.SERVFAIL)]
        answer = digdig.query(server.host, server.port, "example.test.", dns.rdatatype.SOA, 2.0)

The server runs in threads of the test process, so it also serves a digaas
service started in another process, over the loopback interface.
"""

import errno
import ipaddress
import logging
import selectors
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

logger = logging.getLogger(__name__)

UDP = "udp"
TCP = "tcp"

MAX_MESSAGE_BYTES = 65535
BIND_ATTEMPTS = 20
STOP_TIMEOUT_SECONDS = 5.0
SOA_TTL_SECONDS = 3600


class RawTCP(bytes):
    """Bytes written to a TCP connection without the 2-byte length prefix.

    After a reply list that contains a RawTCP item, the server closes the
    connection, because the stream no longer follows DNS over TCP framing.
    RawTCP(b"") closes the connection without sending anything. Over UDP, a
    RawTCP item is sent as a plain datagram.
    """


class FromAddress:
    """A UDP reply item sent from another loopback address than the server's.

    The datagram leaves a socket bound to (host, port), where port defaults to
    the server's own port and 0 lets the kernel pick one. A client whose UDP
    socket is connected to the server's address never receives it. item is
    bytes or a dns.message.Message. Over TCP, a FromAddress item raises
    TypeError, because a TCP connection cannot change its source address.
    """

    def __init__(self, host, item, port=None):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"FromAddress host {host!r} is not a loopback address. "
                             "Use one in 127.0.0.0/8, such as 127.0.0.2.")
        if not isinstance(item, (bytes, dns.message.Message)):
            raise TypeError(f"FromAddress item {item!r} is a {type(item).__name__}, but "
                            "expected bytes or dns.message.Message")
        self.host = host
        self.item = item
        self.port = port

    def __repr__(self):
        return f"FromAddress({self.host!r}, {self.item!r}, port={self.port!r})"


class FakeNameserver:
    """UDP and TCP on the same port of 127.0.0.1 (or ::1), serving from a thread.

    Each UDP query and each TCP connection gets its own thread, so a delayed
    reply does not hold up other queries. Replace handle() by subclassing, or
    assign a function of (query, protocol) to the handler attribute.
    """

    def __init__(self, host="127.0.0.1"):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"FakeNameserver host {host!r} is not a loopback address. "
                             "Use 127.0.0.1 or ::1.")
        self.host = host
        self.port = None

        # Serial of the SOA in the default replies.
        self.serial = 1

        # When not None, called in place of handle().
        self.handler = None

        # (protocol, dns.message.Message) of every query that parsed, in arrival order.
        self.queries = []

        # (protocol, wire bytes) of every query that did not parse. They get no reply.
        self.unparsable_queries = []

        # Exceptions raised while handling a query, also logged with their traceback.
        self.errors = []

        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._udp_socket = None
        self._tcp_socket = None
        self._wakeup_receiver = None
        self._wakeup_sender = None
        self._thread = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers = set()
        self._connections = set()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc_value, traceback):
        self.stop()

    def start(self):
        """Bind a free port for UDP and TCP and start serving. Returns self."""
        self._udp_socket, self._tcp_socket = self._bind_same_port()
        self.port = self._udp_socket.getsockname()[1]
        self._wakeup_receiver, self._wakeup_sender = socket.socketpair()

        self._thread = threading.Thread(target=self._serve, name=f"fakens-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, cutting short delays and open TCP connections."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wakeup_sender.send(b"\0")
        self._thread.join(STOP_TIMEOUT_SECONDS)

        # The serving thread has ended, so no new worker or connection can appear.
        with self._lock:
            connections = list(self._connections)
            workers = list(self._workers)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.join(STOP_TIMEOUT_SECONDS)
            if worker.is_alive():
                logger.warning("fake nameserver port %s: worker %s still running after %s seconds",
                               self.port, worker.name, STOP_TIMEOUT_SECONDS)

        for sock in (self._udp_socket, self._tcp_socket, self._wakeup_receiver, self._wakeup_sender):
            sock.close()
        self._thread = None

    def handle(self, query, protocol):
        """Return the items to send back for one query, in order.

        Each item is bytes (sent as is), a dns.message.Message (sent as wire),
        a RawTCP, a FromAddress (UDP only), or a number of seconds to sleep
        before the next item. An empty list means silence. The default reply
        is authoritative NOERROR: the SOA of the queried name in the answer
        section for a SOA query, and in the authority section (NODATA) for
        any other type.
        """
        if not query.question:
            return [response(query, rcode=dns.rcode.FORMERR, aa=False)]

        question = query.question[0]
        soa = soa_rrset(question.name, self.serial)
        if question.rdtype == dns.rdatatype.SOA:
            return [response(query, answer=[soa])]

        reply = response(query)
        reply.authority.append(soa)
        return [reply]

    def _bind_same_port(self):
        # The kernel picks a free UDP port, and the same number may be taken
        # for TCP by another program, so a few ports are tried.
        for _ in range(BIND_ATTEMPTS):
            udp_socket = socket.socket(self._family, socket.SOCK_DGRAM)
            udp_socket.bind((self.host, 0))
            port = udp_socket.getsockname()[1]

            tcp_socket = socket.socket(self._family, socket.SOCK_STREAM)
            tcp_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp_socket.bind((self.host, port))
            except OSError as error:
                udp_socket.close()
                tcp_socket.close()
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            tcp_socket.listen()
            return udp_socket, tcp_socket

        raise OSError(errno.EADDRINUSE,
                      f"no port free for both UDP and TCP on {self.host} after {BIND_ATTEMPTS} attempts")

    def _serve(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp_socket, selectors.EVENT_READ)
            selector.register(self._tcp_socket, selectors.EVENT_READ)
            selector.register(self._wakeup_receiver, selectors.EVENT_READ)

            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._udp_socket:
                        self._receive_udp()
                    elif key.fileobj is self._tcp_socket:
                        self._accept_tcp()

    def _receive_udp(self):
        try:
            wire, client = self._udp_socket.recvfrom(MAX_MESSAGE_BYTES)
        except OSError as error:
            logger.warning("fake nameserver port %s: UDP receive failed: %s", self.port, error)
            return
        self._start_worker(self._serve_udp_query, wire, client)

    def _accept_tcp(self):
        try:
            connection, _ = self._tcp_socket.accept()
        except OSError as error:
            logger.warning("fake nameserver port %s: TCP accept failed: %s", self.port, error)
            return
        with self._lock:
            self._connections.add(connection)
        self._start_worker(self._serve_tcp_connection, connection)

    def _start_worker(self, target, *args):
        worker = threading.Thread(target=self._run_worker, args=(target, *args), daemon=True)
        with self._lock:
            self._workers.add(worker)
        worker.start()

    def _run_worker(self, target, *args):
        try:
            target(*args)
        except Exception as error:
            if self._stopping.is_set():
                # stop() shuts down sockets under running workers, so errors are expected then.
                logger.debug("fake nameserver port %s: worker failed while stopping: %s", self.port, error)
            else:
                logger.exception("fake nameserver port %s: handling a query failed", self.port)
                self.errors.append(error)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _serve_udp_query(self, wire, client):
        query = self._parse_query(wire, UDP)
        if query is None:
            return
        self._send_udp(self._reply_items(query, UDP), client)

    def _send_udp(self, items, client):
        for item in items:
            if _is_delay(item):
                if self._stopping.wait(item):
                    return
            elif isinstance(item, FromAddress):
                self._send_udp_from(item, client)
            else:
                self._udp_socket.sendto(_to_wire(item), client)

    def _send_udp_from(self, item, client):
        family = socket.AF_INET6 if ":" in item.host else socket.AF_INET
        if family != self._family:
            raise ValueError(f"FromAddress host {item.host!r} is not of the address family of"
                             f" the server on {self.host!r}, so it cannot reach client {client}")
        port = self.port if item.port is None else item.port
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            # SO_REUSEADDR lets workers that reply at the same time bind the same address and port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((item.host, port))
            sock.sendto(_to_wire(item.item), client)

    def _serve_tcp_connection(self, connection):
        try:
            self._serve_tcp_queries(connection)
        except ConnectionError as error:
            # The client going away is normal for a test that gave up waiting.
            logger.info("fake nameserver port %s: TCP client gone: %s", self.port, error)
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _serve_tcp_queries(self, connection):
        while not self._stopping.is_set():
            prefix = _receive_exactly(connection, 2)
            if prefix is None:
                return
            wire = _receive_exactly(connection, struct.unpack("!H", prefix)[0])
            if wire is None:
                return

            # Like BIND, drop a connection whose query does not parse.
            query = self._parse_query(wire, TCP)
            if query is None:
                return

            framing_broken = self._send_tcp(self._reply_items(query, TCP), connection)
            if framing_broken:
                return

    def _send_tcp(self, items, connection):
        """Send the items over a TCP connection. Returns whether a RawTCP item was sent."""
        framing_broken = False
        for item in items:
            if _is_delay(item):
                if self._stopping.wait(item):
                    return True
            elif isinstance(item, FromAddress):
                raise TypeError(f"{item!r} in a TCP reply: FromAddress items are for UDP replies only")
            elif isinstance(item, RawTCP):
                connection.sendall(item)
                framing_broken = True
            else:
                wire = _to_wire(item)
                connection.sendall(struct.pack("!H", len(wire)) + wire)
        return framing_broken

    def _parse_query(self, wire, protocol):
        try:
            query = dns.message.from_wire(wire)
        except Exception as error:
            logger.info("fake nameserver port %s: ignoring unparsable %s query (%s): %r",
                        self.port, protocol, error, wire[:64])
            self.unparsable_queries.append((protocol, wire))
            return None
        self.queries.append((protocol, query))
        return query

    def _reply_items(self, query, protocol):
        handler = self.handler if self.handler is not None else self.handle
        items = handler(query, protocol)
        if isinstance(items, (bytes, dns.message.Message, FromAddress)) or _is_delay(items):
            raise TypeError(f"handler returned a single {type(items).__name__}. "
                            "Return a list of items, such as [response(query)].")
        return items


def _is_delay(item):
    return isinstance(item, (int, float)) and not isinstance(item, bool)


def _to_wire(item):
    if isinstance(item, dns.message.Message):
        return item.to_wire(max_size=MAX_MESSAGE_BYTES)
    if isinstance(item, bytes):
        return bytes(item)
    raise TypeError(f"reply item {item!r} is a {type(item).__name__}, but "
                    "expected bytes, RawTCP, dns.message.Message, FromAddress or a delay in seconds")


def _receive_exactly(connection, byte_count):
    """Read byte_count bytes, or return None if the peer closes the connection first."""
    data = b""
    while len(data) < byte_count:
        chunk = connection.recv(byte_count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def response(query, rcode=dns.rcode.NOERROR, aa=True, answer=(), tc=False):
    """Build a response to query with the given rcode, AA and TC flags and answer section.

    Items of answer are dns.rrset.RRset objects or (name, ttl, rdatatype_text,
    rdata_text) tuples. Tuples of the same name and type join one RRset.
    """
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    if aa:
        reply.flags |= dns.flags.AA
    if tc:
        reply.flags |= dns.flags.TC

    rrsets_from_tuples = {}
    for item in answer:
        if isinstance(item, dns.rrset.RRset):
            reply.answer.append(item)
            continue

        name, ttl, rdatatype_text, rdata_text = item
        name = dns.name.from_text(name) if isinstance(name, str) else name
        rdatatype = dns.rdatatype.from_text(rdatatype_text)
        rrset = rrsets_from_tuples.get((name, rdatatype))
        if rrset is None:
            rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdatatype)
            rrsets_from_tuples[(name, rdatatype)] = rrset
            reply.answer.append(rrset)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdatatype, rdata_text), ttl)
    return reply


def soa_rrset(zone, serial):
    """Build the SOA RRset of zone (a str or dns.name.Name) with that serial."""
    zone_name = dns.name.from_text(zone) if isinstance(zone, str) else zone
    primary = dns.name.from_text("ns1", origin=zone_name)
    mailbox = dns.name.from_text("hostmaster", origin=zone_name)
    rdata_text = f"{primary} {mailbox} {serial} 3600 600 86400 300"
    return dns.rrset.from_text(zone_name, SOA_TTL_SECONDS, dns.rdataclass.IN, dns.rdatatype.SOA, rdata_text)


def with_id(message, new_id):
    """Return a copy of message with another id, leaving message unchanged."""
    copy = dns.message.from_wire(message.to_wire(max_size=MAX_MESSAGE_BYTES))
    copy.id = new_id
    return copy
