"""`digaas bind`: run a throwaway BIND9 on loopback to try digaas against."""

import argparse
import signal
import sys
import tempfile
import threading

from digaas import localbind


def _zone_argument(text):
    name, _, serial_text = text.partition("=")
    try:
        serial = int(serial_text) if serial_text else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid zone {text!r}: use NAME or NAME=SERIAL, such as hello.com.=1418336470") from None
    return name, serial


def _port_argument(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use 1 to 65535")
    return int(text)


def add_arguments(parser):
    parser.add_argument("--port", type=_port_argument,
                        help="DNS port on 127.0.0.1 and ::1 (default: a free port)")
    parser.add_argument("--zone", action="append", default=[], type=_zone_argument,
                        metavar="NAME[=SERIAL]",
                        help="zone to create at start, with SOA serial SERIAL (default 1);"
                             " repeat for more zones")


def run(args):
    """Start BIND9, print how to change its zones, and serve until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    with tempfile.TemporaryDirectory(prefix="digaas-bind-") as workdir:
        try:
            bind = localbind.LocalBind(workdir, port=args.port)
            bind.start()
        except localbind.LocalBindError as error:
            print(f"digaas bind: {error}", file=sys.stderr)
            return 1

        try:
            for name, serial in args.zone:
                bind.add_zone(name, serial=serial)
            print(describe(bind, args.zone), flush=True)
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
        except (localbind.LocalBindError, ValueError) as error:
            print(f"digaas bind: {error}", file=sys.stderr)
            return 1
        finally:
            bind.stop()

    return 0


def describe(bind, zones):
    """Return the text that shows where BIND9 listens and how to change its zones."""
    lines = [f"BIND9 serves on 127.0.0.1 and ::1 port {bind.port}; Ctrl-C stops it"]
    for name, serial in zones:
        lines.append(f"  zone {name} serial {serial}")

    # The commands are ready to paste for the first zone, and show NAME and
    # SERIAL to replace when no zone was given.
    zone, next_serial = "NAME", "SERIAL"
    if zones:
        zone, serial = zones[0]
        zone = zone if zone.endswith(".") else zone + "."
        next_serial = (serial + 1) % 2**32
    lines += [
        f"raise the serial of {zone} to {next_serial} (nsupdate; BIND ignores a serial"
        " that is not higher):",
        f"  printf 'server 127.0.0.1 {bind.port}\\nzone {zone}\\nupdate add {zone} 300 SOA"
        f" ns1.{zone} hostmaster.{zone} {next_serial} 3600 600 86400 300\\nsend\\n' | nsupdate",
        "add a record (BIND raises the serial by one on every record change):",
        f"  printf 'server 127.0.0.1 {bind.port}\\nzone {zone}\\nupdate add www.{zone} 300 A"
        " 192.0.2.1\\nsend\\n' | nsupdate",
        "create a zone (write its file, then add it):",
        f"  printf '@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 300\\n@ 300 IN NS ns1\\n"
        f"ns1 300 IN A 127.0.0.1\\n' > {bind.workdir}/NAME.zone",
        f"  rndc -c {bind.rndc_conf_path} addzone NAME '{{ type primary; file"
        f" \"{bind.workdir}/NAME.zone\"; allow-update {{ any; }}; }};'",
        "delete a zone:",
        f"  rndc -c {bind.rndc_conf_path} delzone -clean NAME",
        f"workdir: {bind.workdir}",
    ]
    return "\n".join(lines)
