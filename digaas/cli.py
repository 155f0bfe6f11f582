"""The digaas command line: `digaas serve` and `digaas demo`."""

import argparse
import os
import pathlib
import shutil
import sys
import sysconfig

import digaas_config
from digaas import demo


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
        "PROCESSES": args.processes and str(args.processes),
    }
    environ = dict(environ)
    for name, value in overrides.items():
        if value is not None:
            environ[f"DIGAAS_{name}"] = value

    # Fail here, with the variable's name, rather than in every uwsgi worker.
    try:
        digaas_config.load(environ)
    except digaas_config.ConfigError as error:
        raise SystemExit(f"digaas: {error}") from None

    command = [find_uwsgi(), "--ini", str(find_uwsgi_ini())]
    # uwsgi embeds the Python it was built for but not a virtualenv's
    # site-packages; point it at the environment this command runs in.
    if sys.prefix != sys.base_prefix:
        command += ["--virtualenv", sys.prefix]
    return command, environ


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

    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    status = args.handler(args)
    if status is not None:
        sys.exit(status)


if __name__ == "__main__":
    main()
