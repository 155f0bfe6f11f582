"""Tests of LocalBind against a real named on loopback."""

import socket

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from digaas import localbind
from digaas.localbind import CommandError, LocalBind, LocalBindError, free_port


def query(bind, qname, rdatatype, address="127.0.0.1"):
    """Send one non-recursive query to bind, as digaas does to an authoritative server."""
    message = dns.message.make_query(qname, rdatatype)
    message.flags &= ~dns.flags.RD
    return dns.query.udp(message, address, port=bind.port, timeout=2.0)


def test_add_zone_serves_serial(bind, unique_zone):
    bind.add_zone(unique_zone, serial=7)

    assert bind.query_serial(unique_zone, "127.0.0.1") == 7
    assert bind.query_serial(unique_zone, "::1") == 7


def test_add_zone_answers_authoritatively(bind, unique_zone):
    bind.add_zone(unique_zone)

    response = query(bind, f"ns1.{unique_zone}", "A")

    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert [rdata.to_text() for rdata in response.answer[0]] == ["127.0.0.1"]


def test_add_zone_twice_fails(bind, unique_zone):
    bind.add_zone(unique_zone)

    with pytest.raises(LocalBindError, match="already exists"):
        bind.add_zone(unique_zone)

    assert bind.query_serial(unique_zone) == 1


def test_set_serial_raises_serial(bind, unique_zone):
    bind.add_zone(unique_zone, serial=1)

    bind.set_serial(unique_zone, 2)
    assert bind.query_serial(unique_zone) == 2

    bind.set_serial(unique_zone, 1000)
    assert bind.query_serial(unique_zone) == 1000
    assert bind.query_serial(unique_zone, "::1") == 1000


def test_set_serial_wraps_around(bind, unique_zone):
    bind.add_zone(unique_zone, serial=2**32 - 2)

    bind.set_serial(unique_zone, 3)

    assert bind.query_serial(unique_zone) == 3


def test_set_serial_rejects_lower(bind, unique_zone):
    bind.add_zone(unique_zone, serial=10)

    with pytest.raises(ValueError, match="not greater than the current serial 10"):
        bind.set_serial(unique_zone, 9)
    with pytest.raises(ValueError, match="not greater"):
        bind.set_serial(unique_zone, 10)

    assert bind.query_serial(unique_zone) == 10


def test_add_record_is_served(bind, unique_zone):
    bind.add_zone(unique_zone)

    bind.add_record(unique_zone, "www", "A", "192.0.2.10", ttl=120)
    bind.add_record(unique_zone, f"txt.{unique_zone}", "TXT", '"hello world"')
    bind.add_record(unique_zone, "alias", "CNAME", "www")

    www = query(bind, f"www.{unique_zone}", "A")
    assert www.rcode() == dns.rcode.NOERROR
    assert [rdata.to_text() for rdata in www.answer[0]] == ["192.0.2.10"]
    assert www.answer[0].ttl == 120

    txt = query(bind, f"txt.{unique_zone}", "TXT")
    assert [rdata.to_text() for rdata in txt.answer[0]] == ['"hello world"']

    alias = query(bind, f"alias.{unique_zone}", "CNAME")
    assert [rdata.to_text() for rdata in alias.answer[0]] == [f"www.{unique_zone}"]


def test_delete_record_removes_one(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.10")
    bind.add_record(unique_zone, "www", "A", "192.0.2.11")

    bind.delete_record(unique_zone, "www", "A", "192.0.2.10")

    response = query(bind, f"www.{unique_zone}", "A")
    assert [rdata.to_text() for rdata in response.answer[0]] == ["192.0.2.11"]


def test_delete_record_removes_rrset(bind, unique_zone):
    bind.add_zone(unique_zone)
    bind.add_record(unique_zone, "www", "A", "192.0.2.10")
    bind.add_record(unique_zone, "www", "A", "192.0.2.11")

    bind.delete_record(unique_zone, "www", "A")

    response = query(bind, f"www.{unique_zone}", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.answer == []


def test_record_change_bumps_serial(bind, unique_zone):
    bind.add_zone(unique_zone, serial=5)

    bind.add_record(unique_zone, "www", "A", "192.0.2.10")
    assert bind.query_serial(unique_zone) == 6

    bind.delete_record(unique_zone, "www", "A")
    assert bind.query_serial(unique_zone) == 7

    bind.delete_record(unique_zone, "absent", "A")
    assert bind.query_serial(unique_zone) == 7


def test_record_change_wraps_serial(bind, unique_zone):
    bind.add_zone(unique_zone, serial=2**32 - 1)

    bind.add_record(unique_zone, "www", "A", "192.0.2.10")

    assert bind.query_serial(unique_zone) == 1


def test_record_outside_zone_rejected(bind, unique_zone):
    bind.add_zone(unique_zone)

    with pytest.raises(ValueError, match="outside zone"):
        bind.add_record(unique_zone, "www.elsewhere.test.", "A", "192.0.2.10")
    with pytest.raises(ValueError, match="invalid for type A"):
        bind.add_record(unique_zone, "www", "A", "not-an-address")


def test_delete_zone_stops_serving(bind, unique_zone):
    bind.add_zone(unique_zone)
    zone_file = bind.zone_file_path(unique_zone)
    assert zone_file.exists()

    bind.delete_zone(unique_zone)

    response = query(bind, unique_zone, "SOA")
    assert response.rcode() == dns.rcode.REFUSED
    assert bind.query_serial(unique_zone) is None
    assert bind.query_serial(unique_zone, "::1") is None
    assert not zone_file.exists()


def test_zone_readded_after_delete(bind, unique_zone):
    bind.add_zone(unique_zone, serial=5)
    bind.set_serial(unique_zone, 6)
    bind.delete_zone(unique_zone)

    bind.add_zone(unique_zone, serial=3)

    assert bind.query_serial(unique_zone) == 3


def test_update_unknown_zone_fails(bind, unique_zone):
    with pytest.raises(CommandError, match="nsupdate.*NOTAUTH"):
        bind.add_record(unique_zone, "www", "A", "192.0.2.10")


def test_delete_unknown_zone_fails(bind, unique_zone):
    with pytest.raises(CommandError, match="delzone.*not found"):
        bind.delete_zone(unique_zone)


def test_two_instances_side_by_side(tmp_path, unique_zone):
    with LocalBind(str(tmp_path / "first")) as first, LocalBind(str(tmp_path / "second")) as second:
        assert first.port != second.port
        assert first.rndc_port != second.rndc_port

        first.add_zone(unique_zone, serial=11)
        second.add_zone(unique_zone, serial=22)
        second.set_serial(unique_zone, 23)

        assert first.query_serial(unique_zone) == 11
        assert second.query_serial(unique_zone) == 23
        assert second.query_serial(unique_zone, "::1") == 23


def test_stop_is_idempotent(tmp_path):
    server = LocalBind(str(tmp_path / "bind"), listen_ipv6=False)
    server.stop()

    server.start()
    port = server.port
    server.stop()
    server.stop()

    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(dns.message.make_query(".", "SOA"), "127.0.0.1", port=port, timeout=0.5)


def test_start_rejects_port_in_use(tmp_path, bind):
    server = LocalBind(str(tmp_path / "bind"), port=bind.port)

    with pytest.raises(LocalBindError, match=f"DNS port {bind.port} is already in use"):
        server.start(timeout_seconds=5)

    assert not (tmp_path / "bind" / "named.log").exists()


def test_start_reports_bind_failure(tmp_path, monkeypatch):
    # Skip the port check, so that named itself meets the taken port, as it
    # would if another process took the port between the check and the bind.
    monkeypatch.setattr(localbind, "_is_port_free", lambda families, port: True)

    # The holder takes a port the system picks, so that no other process can
    # take it first, as one could between free_port() and a bind.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        server = LocalBind(str(tmp_path / "bind"), port=port, listen_ipv6=False)
        with pytest.raises(LocalBindError, match=f"could not listen on DNS port {port}") as raised:
            server.start(timeout_seconds=5)

    assert "interface ignored" in str(raised.value)
    server.stop()


def test_free_port_is_bindable():
    port = free_port(also_ipv6=True)

    assert 0 < port < 65536
    assert free_port() != port
    for family, address in [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as probe:
                probe.bind((address, port))
