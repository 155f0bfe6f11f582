"""The digaas command line: `digaas serve` and `digaas demo`."""

import argparse
import os
import pathlib
import shutil
import sys
import sysconfig

import digaas_config
from digaas import access
from digaas import bindcmd
from digaas import demo
from digaas import report


def find_uwsgi_ini():
    """Return the path of uwsgi.ini: the checkout's, else the installed copy."""
    candidates = [
        pathlib.Path(__file__).resolve().parent.parent / "uwsgi.ini",
        pathlib.Path(sysconfig.get_path("data")) / "share" / "digaas" / "uwsgi.ini",
        pathlib.Path(sys.prefix) / "share" / "digaas" / "uwsgi.ini",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit("digaas: uwsgi.ini not found in " + ", ".join(map(str, candidates))
                     + "; reinstall with `pip install .` from the digaas checkout")


def find_uwsgi():
    """Return the uwsgi executable next to this Python, else the one on PATH."""
    beside_python = pathlib.Path(sys.executable).parent / "uwsgi"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("uwsgi")
    if found is None:
        raise SystemExit("digaas: uwsgi not found; install the requirements"
                         " with `pip install -r requirements.txt`")
    return found


def serve_command(args, environ):
    """Return the uwsgi command line and environment of `digaas serve`."""
    overrides = {
        "LISTEN": args.listen,
        "STORAGE": args.storage,
        "SQLITE_PATH": args.sqlite_path and os.path.abspath(args.sqlite_path),
        "REDIS_URL": args.redis_url,
        "PROCESSES": None if args.processes is None else str(args.processes),
    }
    environ = dict(environ)
    for name, value in overrides.items():
        if value is not None:
            environ[f"DIGAAS_{name}"] = value

    # Fail here, with the variable's name, rather than in every uwsgi worker.
    try:
        config = digaas_config.load(environ)
        check_listen(config.LISTEN)
        access.parse_networks(config.NAMESERVER_ALLOW)
    except (digaas_config.ConfigError, ValueError) as error:
        raise SystemExit(f"digaas: {error}") from None
    if config.PROCESSES < 1:
        raise SystemExit(f"digaas: invalid PROCESSES {config.PROCESSES}: use 1 or more")

    command = [find_uwsgi(), "--ini", str(find_uwsgi_ini())]
    # uwsgi embeds the Python it was built for but not a virtualenv's
    # site-packages; point it at the environment this command runs in.
    if sys.prefix != sys.base_prefix:
        command += ["--virtualenv", sys.prefix]
    return command, environ


def check_listen(listen):
    """Raise ValueError unless listen is HOST:PORT with a port from 1 to 65535.

    uwsgi would otherwise take a value without a port for a UNIX socket path,
    and a port over 65535 modulo 65536.
    """
    host, separator, port_text = listen.rpartition(":")
    allowed = "use HOST:PORT, such as 127.0.0.1:9090 or [::1]:9090"
    if not separator or not host or not port_text.isdigit():
        raise ValueError(f"invalid LISTEN {listen!r}: {allowed}")
    if not 1 <= int(port_text) <= 65535:
        raise ValueError(f"invalid LISTEN {listen!r}: the port must be from 1 to 65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"invalid LISTEN {listen!r}: put an IPv6 address in brackets, {allowed}")


def serve(args):
    command, environ = serve_command(args, os.environ)
    os.execve(command[0], command, environ)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="digaas", description="Dig as a Service: measure DNS propagation times.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser(
        "serve", help="run the HTTP service under uwsgi in gevent mode",
        description="Run the digaas HTTP service. Options override digaas_config.py"
                    " and DIGAAS_<NAME> environment variables.")
    serve_parser.add_argument("--listen", metavar="HOST:PORT",
                              help="address to listen on (default 127.0.0.1:9090)")
    serve_parser.add_argument("--storage", choices=("sqlite", "redis"),
                              help="storage backend (default sqlite)")
    serve_parser.add_argument("--sqlite-path", metavar="FILE",
                              help="sqlite database file (default ./digaas.sqlite3)")
    serve_parser.add_argument("--redis-url", metavar="URL",
                              help="Redis URL (default redis://127.0.0.1:6379/0)")
    serve_parser.add_argument("--processes", type=int, metavar="N",
                              help="uwsgi worker processes (default 1)")
    serve_parser.set_defaults(handler=serve)

    demo_parser = commands.add_parser(
        "demo", help="measure zone creates, updates and deletes on a throwaway BIND9",
        description="Start a throwaway BIND9 and digaas on loopback, create, update and"
                    " delete zones at a fixed rate, post a poll request for every change"
                    " and print the durations per change type. Exits with status 0 when"
                    " every poll request completed, else 1.")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run)

    bind_parser = commands.add_parser(
        "bind", help="run a throwaway BIND9 on loopback to try digaas against",
        description="Start BIND9 on 127.0.0.1 and ::1 with the given zones, print how to"
                    " change them with nsupdate and rndc, and serve until Ctrl-C.")
    bindcmd.add_arguments(bind_parser)
    bind_parser.set_defaults(handler=bindcmd.run)

    report_parser = commands.add_parser(
        "report", help="save the summary and plots of a window from a running digaas",
        description="Ask a running digaas for the summary (GET /stats) and every plot"
                    " (GET /plots/KIND.png) of the requests whose start_time is in"
                    " [START, END), and save them as summary.json and KIND.png in OUT.")
    report.add_arguments(report_parser)
    report_parser.set_defaults(handler=report.run)

    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    status = args.handler(args)
    if status is not None:
        sys.exit(status)


if __name__ == "__main__":
    main()
