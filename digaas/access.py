"""Limits on who may use digaas and where it may send queries.

NAMESERVER_ALLOW keeps digaas from querying hosts it should not, and
API_TOKEN keeps strangers from posting requests at all.
"""

import hmac
import ipaddress

import falcon


class NameserverNotAllowed(Exception):
    """A poll request names a nameserver outside NAMESERVER_ALLOW."""


def parse_networks(text):
    """Return the networks of a comma-separated NAMESERVER_ALLOW, or None for any.

    Raises ValueError naming the entry that is not a network.
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return None

    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"invalid NAMESERVER_ALLOW entry {entry!r}: use networks such as"
                             " 192.0.2.0/24 or 2001:db8::/32, separated by commas") from None
    return networks


def check_nameserver(address, networks, setting_text):
    """Raise NameserverNotAllowed unless address is in one of networks (None: any)."""
    if networks is None:
        return
    ip = ipaddress.ip_address(address)
    if not any(ip in network for network in networks):
        raise NameserverNotAllowed(
            f"nameserver {address} is not allowed: NAMESERVER_ALLOW is {setting_text!r}")


class BearerTokenMiddleware:
    """Require `Authorization: Bearer <token>` on every endpoint but GET /."""

    def __init__(self, token):
        self._token = token.encode()

    def process_request(self, req, resp):
        if req.method == "GET" and req.path == "/":
            return

        header = req.get_header("Authorization") or ""
        scheme, _, credentials = header.partition(" ")
        # compare_digest takes as long for a wrong token as for a right one,
        # so response times do not reveal how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                credentials.strip().encode(), self._token):
            problem = "no bearer token was sent"
            if scheme.lower() == "bearer":
                problem = "the bearer token sent is not this digaas's API token"
            elif header:
                problem = "the Authorization header does not start with 'Bearer '"
            raise falcon.HTTPUnauthorized(
                title="Authentication required",
                description=f"{problem}: send the API token as 'Authorization: Bearer <token>'"
                            " (the API_TOKEN setting of this digaas)",
                challenges=["Bearer"])
