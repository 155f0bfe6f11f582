import pathlib

import pytest

import digaas_config

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_defaults_without_environment():
    config = digaas_config.load({})

    assert config.STORAGE == "sqlite"
    assert config.LISTEN == "127.0.0.1:9090"
    assert config.DNS_QUERY_TIMEOUT_SECONDS == 1.0


def test_environment_overrides_each_type():
    config = digaas_config.load({
        "DIGAAS_STORAGE": "redis",
        "DIGAAS_PROCESSES": "2",
        "DIGAAS_DNS_QUERY_TIMEOUT_SECONDS": "0.25",
    })

    assert config.STORAGE == "redis"
    assert config.PROCESSES == 2
    assert config.DNS_QUERY_TIMEOUT_SECONDS == 0.25


def test_every_setting_can_be_overridden():
    for name, default in digaas_config.defaults().items():
        config = digaas_config.load({f"DIGAAS_{name}": str(default)})
        assert getattr(config, name) == default


@pytest.mark.parametrize("name, text", [
    ("PROCESSES", "two"),
    ("DNS_QUERY_TIMEOUT_SECONDS", "1s"),
])
def test_bad_override_names_variable(name, text):
    with pytest.raises(digaas_config.ConfigError) as raised:
        digaas_config.load({f"DIGAAS_{name}": text})

    assert f"DIGAAS_{name}" in str(raised.value)
    assert text in str(raised.value)


def test_uwsgi_ini_defaults_match_config():
    # uwsgi.ini repeats three defaults for `uwsgi --ini` without the
    # environment; they must agree with digaas_config.
    text = (REPO / "uwsgi.ini").read_text()
    lines = text.splitlines()

    def default_of(variable, option):
        start = lines.index(f"if-not-env = {variable}")
        key, value = lines[start + 1].split("=", 1)
        assert key.strip() == option
        return value.strip()

    assert default_of("DIGAAS_LISTEN", "http-socket") == digaas_config.LISTEN
    assert default_of("DIGAAS_PROCESSES", "processes") == str(digaas_config.PROCESSES)
    assert (default_of("DIGAAS_GEVENT_ASYNC_CORES", "gevent")
            == str(digaas_config.GEVENT_ASYNC_CORES))
