"""What the server records from a request itself, never from its body: pure functions.

The HTTP layer reads the headers and the peer address and hands them here; everything
stored from them (user agent, IP prefix) is made safe in this one place.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from datetime import datetime

from cmp.canonical import utc_text
from cmp.jurisdiction import UNKNOWN, Location

USER_AGENT_MAX = 256


@dataclass(frozen=True, slots=True)
class Facts:
    """The request's own facts: stored with every event it carries."""

    origin: str | None
    user_agent: str | None
    ip_prefix: str | None
    gpc: bool
    received_at: datetime
    received_text: str  # received_at in the chain's form, formatted once per request
    location: Location = UNKNOWN  # from a trusted proxy's headers only


def request_facts(
    *,
    origin: str | None,
    user_agent: str | None,
    client_ip: str | None,
    sec_gpc: str | None,
    now: datetime,
    location: Location = UNKNOWN,
) -> Facts:
    return Facts(
        origin=origin,
        user_agent=header_text(user_agent, USER_AGENT_MAX),
        ip_prefix=ip_prefix(client_ip),
        gpc=(sec_gpc or "").strip() == "1",
        received_at=now,
        received_text=utc_text(now),
        location=location,
    )


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def header_text(value: str | None, limit: int) -> str | None:
    """A header value as storable text: never rejected, only made safe.

    aiohttp keeps undecodable header bytes as lone surrogates; those become U+FFFD, as do
    controls, and the result is cut to `limit` characters.
    """
    if not value:
        return None
    if not (value.isascii() and value.isprintable()):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        value = _UNPRINTABLE.sub("\ufffd", value)
    return value[:limit]


def ip_prefix(address: str | None) -> str | None:
    """IPv4 /24 or IPv6 /48 network of a client address; never the address itself."""
    if not address:
        return None
    try:
        # The common case in C, without the ipaddress module.
        a, b, c, _ = socket.inet_pton(socket.AF_INET, address)
        return f"{a}.{b}.{c}.0/24"
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
