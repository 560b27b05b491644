"""aiohttp's own server log, without personal data (docs/api.md, Operations).

aiohttp logs every request it cannot parse (a header without a colon, a bad
Content-Length, TLS on the plain port) as "Error handling request from <client IP>",
with a traceback whose message quotes the offending bytes. The app hands aiohttp
`SERVER_LOG` instead of its module logger (cmp/app.py), and the filter below rewrites
each record before any handler sees it: an address becomes its /24 or /48 network, and a
parse error becomes one INFO line with its status and kind — the internet sends these
all day, so they are neither errors nor worth a traceback.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp.http_exceptions import HttpProcessingError

from cmp.ingest.facts import ip_prefix

SERVER_LOG = logging.getLogger("cmp.http")


def _network(value: object) -> object:
    """`value` with any IP address replaced by its network."""
    if not isinstance(value, str):
        return value
    try:
        ipaddress.ip_address(value.split("%")[0])
    except ValueError:
        return value
    return ip_prefix(value) or "-"


class NoClientAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_network(arg) for arg in record.args)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            network = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "malformed HTTP request from %s: %s %s"
            record.args = (network, exc.code, type(exc).__name__)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


SERVER_LOG.addFilter(NoClientAddresses())
