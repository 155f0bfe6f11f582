import argparse

import pytest

from digaas import cli


def serve_args(**changes):
    values = dict(listen=None, storage=None, sqlite_path=None, redis_url=None, processes=None)
    values.update(changes)
    return argparse.Namespace(**values)


@pytest.mark.parametrize("listen", ["127.0.0.1:9090", "[::1]:9090", "localhost:1", "0.0.0.0:65535"])
def test_listen_accepted(listen):
    cli.check_listen(listen)


@pytest.mark.parametrize("listen, fragment", [
    ("127.0.0.1:99999", "from 1 to 65535"),
    ("127.0.0.1:0", "from 1 to 65535"),
    ("nonsense", "HOST:PORT"),
    ("127.0.0.1:9090x", "HOST:PORT"),
    (":9090", "HOST:PORT"),
    ("::1:9090", "brackets"),
])
def test_listen_rejected(listen, fragment):
    with pytest.raises(ValueError) as raised:
        cli.check_listen(listen)

    assert listen in str(raised.value)
    assert fragment in str(raised.value)


def test_serve_sets_environment():
    command, environ = cli.serve_command(
        serve_args(listen="127.0.0.1:9999", storage="redis", redis_url="redis://127.0.0.1:1/0",
                   processes=2), {})

    assert command[1:3] == ["--ini", str(cli.find_uwsgi_ini())]
    assert environ["DIGAAS_LISTEN"] == "127.0.0.1:9999"
    assert environ["DIGAAS_STORAGE"] == "redis"
    assert environ["DIGAAS_PROCESSES"] == "2"


@pytest.mark.parametrize("changes, fragment", [
    ({"processes": 0}, "PROCESSES 0"),
    ({"listen": "nonsense"}, "LISTEN 'nonsense'"),
])
def test_serve_rejects_bad_options(changes, fragment):
    with pytest.raises(SystemExit) as raised:
        cli.serve_command(serve_args(**changes), {})

    assert fragment in str(raised.value)


def test_serve_rejects_bad_environment():
    with pytest.raises(SystemExit) as raised:
        cli.serve_command(serve_args(), {"DIGAAS_PROCESSES": "many"})

    assert "DIGAAS_PROCESSES" in str(raised.value)


def test_bind_command_serves_zones():
    import re
    import signal
    import subprocess
    import sys

    import dns.rdatatype

    from digaas import digdig
    from digaas.localservice import SOURCE_ROOT

    process = subprocess.Popen(
        [sys.executable, "-m", "digaas.cli", "bind", "--zone", "tried.test.=42"],
        cwd=SOURCE_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()
        port = int(re.search(r"port (\d+)", first_line).group(1))
        answer = digdig.query("127.0.0.1", port, "tried.test.", dns.rdatatype.SOA, 2.0)
        serial = digdig.find_soa_serial(answer.response, "tried.test.")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=20)

    assert "127.0.0.1 and ::1" in first_line
    assert serial == 42
    assert status == 0


def test_serve_rejects_bad_allow_list():
    with pytest.raises(SystemExit) as raised:
        cli.serve_command(serve_args(), {"DIGAAS_NAMESERVER_ALLOW": "10.0.0.0/8,nowhere"})

    assert "'nowhere'" in str(raised.value)
