"""A throwaway BIND9 (named) on loopback, for `digaas demo` and the tests.

LocalBind writes a named.conf into a directory it owns, runs `named -g` as a
child process, adds and deletes zones with `rndc addzone`/`rndc delzone`, and
changes zone contents with `nsupdate`. named listens only on 127.0.0.1 and
(optionally) ::1. It never recurses, never sends NOTIFY and does no DNSSEC
validation, so it sends no queries of its own.

NOTE: Debian's bind9 package ships an AppArmor profile for /usr/sbin/named
that allows file access only under /etc/bind, /var/lib/bind and
/var/cache/bind. On a host where that profile is enforced, named cannot read
a named.conf in any other workdir. Use a workdir under /var/cache/bind or run
`aa-complain /usr/sbin/named`. Hosts without AppArmor are not affected.
"""

import base64
import logging
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.serial

logger = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 10.0
ZONE_CHANGE_TIMEOUT_SECONDS = 5.0
QUERY_TIMEOUT_SECONDS = 1.0
POLL_INTERVAL_SECONDS = 0.02
STARTUP_POLL_INTERVAL_SECONDS = 0.1
STARTUP_QUERY_TIMEOUT_SECONDS = 0.25

# How many fresh ports start() tries when named cannot bind the ports it was
# given. Only ports picked by free_port() are replaced, never a port the
# caller passed in.
START_ATTEMPTS = 3

LOG_TAIL_LINES = 20

# Socket buffer size asked of named for its UDP sockets; the kernel caps it
# at net.core.rmem_max and wmem_max.
UDP_BUFFER_BYTES = 4 << 20

RNDC_KEY_NAME = "digaas-rndc"

# SOA timers (seconds) and TTL (seconds) written into every zone file. They
# only matter to secondaries and caches, which a LocalBind never has.
SOA_REFRESH_SECONDS = 3600
SOA_RETRY_SECONDS = 600
SOA_EXPIRE_SECONDS = 86400
SOA_MINIMUM_SECONDS = 60
ZONE_TTL_SECONDS = 300

MAX_SERIAL = 2**32 - 1

# named logs "creating IPv4 interface lo failed; interface ignored" and keeps
# running when a socket without SO_REUSEPORT is already bound to its DNS port.
PORT_CONFLICT_MARKER = "interface ignored"

# Zone names become file names and rndc arguments, so only hostname
# characters are accepted.
ZONE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

# Ports handed out by free_port() in this process. A port is closed again
# before it is returned, so without this set two calls in a row could return
# the same port.
_issued_ports: set[int] = set()
_issued_ports_lock = threading.Lock()


class LocalBindError(Exception):
    """named failed to start, stop or apply a change."""


class CommandError(LocalBindError):
    """An rndc or nsupdate command failed or timed out."""

    def __init__(self, command, returncode, stdout, stderr, hint=""):
        self.command = list(command)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

        if returncode is None:
            status = f"timed out after {COMMAND_TIMEOUT_SECONDS} seconds"
        else:
            status = f"failed with exit status {returncode}"
        output = "\n".join(part.strip() for part in (stderr, stdout) if part.strip())
        message = f"command {shlex.join(self.command)} {status}: {output or '(no output)'}"
        if hint:
            message = f"{message}\n{hint}"
        super().__init__(message)


def free_port(host: str = "127.0.0.1", also_ipv6: bool = False) -> int:
    """Pick a port that is free for both UDP and TCP on host (and ::1 if also_ipv6).

    The port is released before it is returned, so another process can take
    it before the caller binds it. Callers that start a server on the port
    should be ready to retry with a new one.
    """
    families = [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    if also_ipv6 and host != "::1":
        families.append((socket.AF_INET6, "::1"))

    for _ in range(100):
        with socket.socket(families[0][0], socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]

        with _issued_ports_lock:
            if port in _issued_ports:
                continue
            if not _is_port_free(families, port):
                continue
            _issued_ports.add(port)
            return port

    raise LocalBindError(
        f"no port free for UDP and TCP on {host}"
        f"{' and ::1' if also_ipv6 else ''} after 100 attempts; "
        "check what holds the local port range (ss -tulpn)")


def _loopback_families(also_ipv6):
    families = [(socket.AF_INET, "127.0.0.1")]
    if also_ipv6:
        families.append((socket.AF_INET6, "::1"))
    return families


def _is_port_free(families, port):
    # A plain bind, without SO_REUSEADDR or SO_REUSEPORT, fails on any port
    # that named or another server has bound.
    for family, address in families:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as probe:
                try:
                    probe.bind((address, port))
                except OSError:
                    return False
    return True


def _find_program(name):
    # named and rndc live in /usr/sbin, which a non-root PATH often lacks.
    search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search_path)
    if path is None:
        raise LocalBindError(
            f"{name} not found in PATH or /usr/sbin; install BIND9 "
            "(on Debian: apt-get install bind9 bind9-dnsutils)")
    return path


def _check_config_path(path):
    # Paths are written inside double quotes in named.conf and rndc.conf.
    if any(character in str(path) for character in '"\\\n'):
        raise ValueError(
            f"workdir {str(path)!r} contains a double quote, backslash or newline, "
            "which named.conf cannot quote; choose another directory")


class LocalBind:
    """A throwaway BIND9 (named) on loopback, driven with rndc and nsupdate."""

    def __init__(self, workdir: str, port: int | None = None, listen_ipv6: bool = True):
        """Prepare a named that will keep its files in workdir.

        workdir must be a directory that no other LocalBind uses. It is
        created if missing. When port is None, a port free on 127.0.0.1 (and
        ::1 when listen_ipv6) for UDP and TCP is picked now. The rndc control
        port is always picked and listens on 127.0.0.1 only.
        """
        self.workdir = Path(workdir).resolve()
        _check_config_path(self.workdir)
        self.listen_ipv6 = listen_ipv6

        self._port_is_picked = port is None
        self.port = free_port(also_ipv6=listen_ipv6) if port is None else port
        self.rndc_port = free_port()
        self.stats_port = free_port()

        self._process = None
        self._log_file = None

    @property
    def named_conf_path(self) -> Path:
        return self.workdir / "named.conf"

    @property
    def rndc_conf_path(self) -> Path:
        return self.workdir / "rndc.conf"

    @property
    def log_path(self) -> Path:
        """File that receives named's stdout and stderr (named -g logs to stderr)."""
        return self.workdir / "named.log"

    @property
    def pid(self) -> int | None:
        """Process id of the running named, or None when it is not running."""
        return None if self._process is None else self._process.pid

    @property
    def addresses(self) -> list[str]:
        """Addresses on which named serves DNS."""
        return ["127.0.0.1", "::1"] if self.listen_ipv6 else ["127.0.0.1"]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.stop()

    def __repr__(self):
        return f"LocalBind(workdir={str(self.workdir)!r}, port={self.port}, rndc_port={self.rndc_port})"

    # Process lifecycle.

    def start(self, timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS) -> None:
        """Start named and wait until rndc and a SOA query on each address work.

        Raises LocalBindError with the tail of named's log when named exits,
        cannot bind its ports or is not ready within timeout_seconds.
        """
        if self._process is not None:
            raise LocalBindError(f"{self!r} is already running; call stop() first")

        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once(timeout_seconds)
                return
            except _PortConflict as conflict:
                self.stop()
                if (conflict.is_dns_port and not self._port_is_picked) or attempt == START_ATTEMPTS:
                    raise LocalBindError(
                        f"{conflict}; pass a free port, or port=None to let LocalBind pick one") from None
                logger.warning("%s, retrying with new ports (attempt %d of %d)",
                               conflict, attempt + 1, START_ATTEMPTS)
                if self._port_is_picked:
                    self.port = free_port(also_ipv6=self.listen_ipv6)
                self.rndc_port = free_port()
                self.stats_port = free_port()

    def _start_once(self, timeout_seconds):
        # named sets SO_REUSEPORT on its DNS and control sockets (seen with
        # 9.18.49), so a second named of the same user on a port in use starts
        # without an error and the kernel splits the traffic between the two.
        # Check the ports first.
        if not _is_port_free(_loopback_families(self.listen_ipv6), self.port):
            raise _PortConflict(f"DNS port {self.port} is already in use on "
                                f"{' or '.join(self.addresses)}", is_dns_port=True)
        if not _is_port_free(_loopback_families(False), self.rndc_port):
            raise _PortConflict(f"rndc port {self.rndc_port} is already in use on 127.0.0.1",
                                is_dns_port=False)

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "zones").mkdir(exist_ok=True)
        self._write_rndc_files()
        self.named_conf_path.write_text(self._render_named_conf())

        command = [_find_program("named"), "-g", "-c", str(self.named_conf_path)]
        if not self.listen_ipv6:
            command.append("-4")

        # named runs as the current user because no -u is passed. Its log goes
        # to a file, because nothing reads a pipe while named runs and a full
        # pipe would block it.
        self._log_file = open(self.log_path, "w")
        self._process = subprocess.Popen(
            command, cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT)
        logger.info("named pid %d starting in %s, DNS port %d, rndc port %d",
                    self._process.pid, self.workdir, self.port, self.rndc_port)

        self._wait_until_ready(time.monotonic() + timeout_seconds)
        logger.info("named pid %d is ready on %s port %d",
                    self._process.pid, " and ".join(self.addresses), self.port)

    def _wait_until_ready(self, deadline):
        rndc_ready = False
        pending_addresses = list(self.addresses)

        while True:
            # Checked before the exit status, because named exits when it
            # can listen on no address at all.
            if PORT_CONFLICT_MARKER in self._read_log():
                raise _PortConflict(
                    f"named could not listen on DNS port {self.port}, another socket took it; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}", is_dns_port=True)
            if self._process.poll() is not None:
                self._fail_start(f"named exited with status {self._process.returncode} during startup")

            if not rndc_ready:
                rndc_ready = self._try_rndc_status()
            if rndc_ready:
                pending_addresses = [address for address in pending_addresses
                                     if not self._answers_queries(address)]
            if rndc_ready and not pending_addresses:
                return

            if time.monotonic() >= deadline:
                waiting_for = [] if rndc_ready else [f"rndc status on 127.0.0.1 port {self.rndc_port}"]
                waiting_for += [f"DNS on {address} port {self.port}" for address in pending_addresses]
                self._fail_start(f"named was not ready within the start timeout; "
                                 f"still waiting for {', '.join(waiting_for)}")
            time.sleep(STARTUP_POLL_INTERVAL_SECONDS)

    def _try_rndc_status(self):
        try:
            self._rndc("status")
        except CommandError:
            return False
        return True

    def _answers_queries(self, address):
        query = dns.message.make_query(dns.name.root, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        try:
            dns.query.udp(query, address, port=self.port, timeout=STARTUP_QUERY_TIMEOUT_SECONDS)
        except (dns.exception.DNSException, OSError):
            return False
        return True

    def _fail_start(self, reason):
        message = f"{reason}. Last lines of {self.log_path}:\n{self._log_tail()}"
        if "permission denied" in message.lower():
            message += ("\nIf AppArmor enforces Debian's named profile, use a workdir under "
                        "/var/cache/bind or run `aa-complain /usr/sbin/named`.")
        self.stop()
        raise LocalBindError(message)

    def stop(self) -> None:
        """Stop named: rndc stop, then SIGTERM, then SIGKILL. Does nothing if not running."""
        process = self._process
        if process is None:
            return

        if process.poll() is None:
            try:
                self._rndc("stop")
            except CommandError as error:
                logger.warning("rndc stop failed for named pid %d, sending SIGTERM: %s", process.pid, error)
                process.terminate()

        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("named pid %d still running %s seconds after stop, sending SIGTERM",
                           process.pid, STOP_TIMEOUT_SECONDS)
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("named pid %d ignored SIGTERM, sending SIGKILL", process.pid)
                process.kill()
                process.wait()

        logger.info("named pid %d stopped with status %s", process.pid, process.returncode)
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # Configuration files.

    def _write_rndc_files(self):
        secret = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        key_path = self.workdir / "rndc.key"
        key_text = f'key "{RNDC_KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'
        _write_private(key_path, key_text)

        rndc_conf = (
            f'include "{key_path}";\n'
            "options {\n"
            f'\tdefault-key "{RNDC_KEY_NAME}";\n'
            "\tdefault-server 127.0.0.1;\n"
            f"\tdefault-port {self.rndc_port};\n"
            "};\n")
        _write_private(self.rndc_conf_path, rndc_conf)

    def _render_named_conf(self):
        workdir = self.workdir
        listen_on_v6 = "{ ::1; }" if self.listen_ipv6 else "{ none; }"

        # directory is where named writes its own files: the new-zone
        # database (_default.nzd), managed-keys.bind, journals. lock-file none
        # lets several instances run at once. recursion no turns off the
        # built-in root hints and the automatic empty zones.
        return f"""\
// Written by digaas.localbind on every start(); edits are overwritten.
include "{workdir / 'rndc.key'}";

controls {{
    inet 127.0.0.1 port {self.rndc_port} allow {{ 127.0.0.1; }} keys {{ "{RNDC_KEY_NAME}"; }};
}};

options {{
    directory "{workdir}";
    pid-file "{workdir / 'named.pid'}";
    lock-file none;
    session-keyfile "{workdir / 'session.key'}";
    managed-keys-directory "{workdir}";

    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 port {self.port} {listen_on_v6};

    allow-new-zones yes;
    recursion no;
    notify no;
    dnssec-validation no;

    // The default socket buffers (net.core.rmem_default, often 208 KiB)
    // overflow when a poll engine or dnsperf sends tens of thousands of
    // queries per second.
    udp-receive-buffer {UDP_BUFFER_BYTES};
    udp-send-buffer {UDP_BUFFER_BYTES};
}};

// Query counters as JSON at http://127.0.0.1:<stats_port>/json/v1/server.
statistics-channels {{
    inet 127.0.0.1 port {self.stats_port} allow {{ 127.0.0.1; }};
}};
"""

    # Zones.

    def zone_file_path(self, zone_name: str) -> Path:
        """Path of the zone's file, such as <workdir>/zones/example.test.zone."""
        return self.workdir / "zones" / f"{_zone_text(zone_name)}zone"

    def add_zone(self, zone_name: str, serial: int = 1) -> None:
        """Create a primary zone that accepts dynamic updates from anyone.

        The zone contains a SOA with the given serial, NS ns1.<zone> and
        ns1.<zone> A 127.0.0.1. Returns once a SOA query on 127.0.0.1 sees
        the zone. Raises LocalBindError if the zone file already exists in
        workdir (the zone was added and not deleted), and CommandError if rndc
        rejects the zone.
        """
        zone = _zone_text(zone_name)
        _check_serial(serial)
        zone_file = self.zone_file_path(zone)

        if zone_file.exists():
            raise LocalBindError(f"zone {zone} already exists in {self.workdir}; call delete_zone() first")
        zone_file.write_text(
            f"$ORIGIN {zone}\n"
            f"$TTL {ZONE_TTL_SECONDS}\n"
            f"@ IN SOA ns1.{zone} hostmaster.{zone} ( {serial} {SOA_REFRESH_SECONDS} "
            f"{SOA_RETRY_SECONDS} {SOA_EXPIRE_SECONDS} {SOA_MINIMUM_SECONDS} )\n"
            f"@ IN NS ns1.{zone}\n"
            "ns1 IN A 127.0.0.1\n")

        zone_config = f'{{ type primary; file "{zone_file}"; allow-update {{ any; }}; }};'
        try:
            self._rndc("addzone", zone, zone_config)
        except CommandError:
            zone_file.unlink(missing_ok=True)
            raise

        self._wait_for(lambda: self.query_serial(zone) == serial,
                       f"zone {zone} with serial {serial} to be served after rndc addzone")
        logger.debug("zone %s added with serial %d", zone, serial)

    def delete_zone(self, zone_name: str) -> None:
        """Remove a zone with `rndc delzone -clean`, which also deletes its file and journal.

        Returns once the zone is no longer served and its file is gone.
        """
        zone = _zone_text(zone_name)
        self._rndc("delzone", "-clean", zone)

        # named deletes the files in a background task after it replies to rndc.
        zone_file = self.zone_file_path(zone)
        self._wait_for(lambda: self.query_serial(zone) is None and not zone_file.exists(),
                       f"zone {zone} to stop being served and {zone_file} to be deleted")
        logger.debug("zone %s deleted", zone)

    def set_serial(self, zone_name: str, serial: int) -> None:
        """Replace the zone's SOA with one that carries serial, via nsupdate.

        BIND silently ignores a SOA update whose serial is not greater than
        the current one in RFC 1982 serial arithmetic, so this raises
        ValueError for such a serial instead of sending it. A serial 2**31 or
        more ahead also counts as not greater, because RFC 1982 leaves that
        comparison undefined.
        """
        zone = _zone_text(zone_name)
        _check_serial(serial)

        soa = self._query_soa(zone, "127.0.0.1")
        if soa is None:
            raise LocalBindError(f"zone {zone} is not served on 127.0.0.1 port {self.port}; call add_zone() first")
        if not dns.serial.Serial(serial) > dns.serial.Serial(soa.serial):
            lowest = (soa.serial + 1) % 2**32
            highest = (soa.serial + 2**31 - 1) % 2**32
            raise ValueError(
                f"serial {serial} is not greater than the current serial {soa.serial} of zone {zone} "
                "in RFC 1982 arithmetic, and BIND ignores such SOA updates; "
                f"use a serial from {lowest} up to {highest}, counting modulo 2**32")

        new_soa = soa.replace(serial=serial)
        self._nsupdate(zone, [f"update add {zone} {ZONE_TTL_SECONDS} SOA {new_soa.to_text()}"])

        served_serial = self.query_serial(zone)
        if served_serial != serial:
            raise LocalBindError(
                f"zone {zone} serves serial {served_serial} after nsupdate set serial {serial}; "
                f"see {self.log_path}")
        logger.debug("zone %s serial set to %d", zone, serial)

    def add_record(self, zone_name: str, name: str, rdatatype: str, rdata: str, ttl: int = 300) -> None:
        """Add one record to the zone via nsupdate.

        name is relative to the zone ("www", "@" for the apex) unless it ends
        with a dot. Names inside rdata are relative to the zone too. BIND
        raises the SOA serial by one for every update that changes the zone
        (its default serial-update-method is increment), and it skips 0 when
        the serial wraps.
        """
        zone = _zone_text(zone_name)
        owner = _owner_text(zone, name)
        record = _rdata_text(zone, rdatatype, rdata)
        if not 0 <= ttl <= 2**31 - 1:
            raise ValueError(f"ttl {ttl} is out of range; use 0 to 2147483647 seconds")

        self._nsupdate(zone, [f"update add {owner} {ttl} {record}"])
        logger.debug("zone %s: added %s %d %s", zone, owner, ttl, record)

    def delete_record(self, zone_name: str, name: str, rdatatype: str, rdata: str | None = None) -> None:
        """Delete one record via nsupdate, or the whole rrset when rdata is None.

        Deleting a record that does not exist succeeds, as in RFC 2136, and
        leaves the serial alone. A deletion that changes the zone raises the
        serial by one, as in add_record().
        """
        zone = _zone_text(zone_name)
        owner = _owner_text(zone, name)
        if rdata is None:
            record = dns.rdatatype.to_text(_parse_rdatatype(rdatatype))
        else:
            record = _rdata_text(zone, rdatatype, rdata)

        self._nsupdate(zone, [f"update delete {owner} {record}"])
        logger.debug("zone %s: deleted %s %s", zone, owner, record)

    def query_counts(self) -> dict:
        """Return named's counters of received queries, from its statistics channel.

        Keys: "udp" and "tcp" (queries received over each), "total" (all
        requests of opcode QUERY).
        """
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.stats_port}/json/v1/server"
        with urllib.request.urlopen(url, timeout=COMMAND_TIMEOUT_SECONDS) as response:
            server = json.load(response)
        nsstats = server.get("nsstats", {})
        return {"udp": nsstats.get("QryUDP", 0), "tcp": nsstats.get("QryTCP", 0),
                "total": server.get("opcodes", {}).get("QUERY", 0)}

    def query_serial(self, zone_name: str, address: str = "127.0.0.1") -> int | None:
        """Query the zone's SOA on address and return its serial, or None if the zone is not served.

        Raises dns.exception.Timeout when named does not respond at all.
        """
        soa = self._query_soa(_zone_text(zone_name), address)
        return None if soa is None else soa.serial

    def _query_soa(self, zone, address):
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        response = dns.query.udp(query, address, port=self.port, timeout=QUERY_TIMEOUT_SECONDS)

        # named returns REFUSED for a zone it does not serve.
        if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
            return None
        rrset = response.get_rrset(response.answer, dns.name.from_text(zone),
                                   dns.rdataclass.IN, dns.rdatatype.SOA)
        if rrset is None:
            return None
        return rrset[0]

    def _wait_for(self, condition, description):
        deadline = time.monotonic() + ZONE_CHANGE_TIMEOUT_SECONDS
        while not condition():
            if time.monotonic() >= deadline:
                raise LocalBindError(
                    f"timed out after {ZONE_CHANGE_TIMEOUT_SECONDS} seconds waiting for {description}. "
                    f"Last lines of {self.log_path}:\n{self._log_tail()}")
            time.sleep(POLL_INTERVAL_SECONDS)

    # Commands.

    def _rndc(self, *arguments):
        command = [_find_program("rndc"), "-c", str(self.rndc_conf_path), *arguments]
        return self._run(command, input_text=None)

    def _nsupdate(self, zone, update_lines):
        # -t limits the whole update in seconds. -u (seconds) and -r limit the
        # UDP retries inside it.
        command = [_find_program("nsupdate"), "-t", str(int(COMMAND_TIMEOUT_SECONDS)), "-u", "1", "-r", "2"]
        script = "\n".join([f"server 127.0.0.1 {self.port}", f"zone {zone}", *update_lines, "send", ""])
        return self._run(command, input_text=script)

    def _run(self, command, input_text):
        try:
            completed = subprocess.run(
                command, input=input_text, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as error:
            raise CommandError(command, None, _decode(error.stdout), _decode(error.stderr)) from None

        if completed.returncode != 0:
            hint = ""
            if input_text is not None:
                hint = f"nsupdate input was:\n{input_text}"
            raise CommandError(command, completed.returncode, completed.stdout, completed.stderr, hint)
        return completed.stdout

    # Log.

    def _read_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self):
        lines = self._read_log().splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(log is empty)"


class _PortConflict(Exception):
    """A port that named needs is already in use."""

    def __init__(self, message, is_dns_port):
        super().__init__(message)
        self.is_dns_port = is_dns_port


def _write_private(path, text):
    # The rndc key grants full control of named, so only the owner may read it.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _decode(output):
    if output is None:
        return ""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output


def _zone_text(zone_name):
    """Return the zone name in absolute text form ("example.test."), after validating it."""
    text = zone_name.rstrip(".")
    if not ZONE_NAME_PATTERN.match(text):
        raise ValueError(
            f"zone name {zone_name!r} is invalid; use dot-separated labels of letters, "
            "digits, '-' and '_', such as 'example.test.'")
    return dns.name.from_text(text).to_text()


def _owner_text(zone, name):
    zone_name = dns.name.from_text(zone)
    try:
        owner = dns.name.from_text(name, origin=zone_name)
    except dns.exception.DNSException as error:
        raise ValueError(f"record name {name!r} is invalid: {error}") from None
    if not owner.is_subdomain(zone_name):
        raise ValueError(f"record name {name!r} is outside zone {zone}; use a name under {zone} or a relative name")
    return owner.to_text()


def _parse_rdatatype(rdatatype):
    try:
        return dns.rdatatype.from_text(rdatatype)
    except dns.rdatatype.UnknownRdatatype:
        raise ValueError(f"record type {rdatatype!r} is unknown; use a type name such as A, AAAA, TXT or CNAME") from None


def _rdata_text(zone, rdatatype, rdata):
    """Return "TYPE RDATA" with names made absolute, so nsupdate reads them as given."""
    parsed_type = _parse_rdatatype(rdatatype)
    try:
        parsed = dns.rdata.from_text(dns.rdataclass.IN, parsed_type, rdata,
                                     origin=dns.name.from_text(zone), relativize=False)
    except (dns.exception.DNSException, ValueError) as error:
        raise ValueError(f"rdata {rdata!r} is invalid for type {rdatatype}: {error}") from None
    return f"{dns.rdatatype.to_text(parsed_type)} {parsed.to_text()}"


def _check_serial(serial):
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial {serial} is out of range; use 0 to {MAX_SERIAL}")
