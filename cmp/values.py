"""Values from outside, and the one rule each is held to (docs/api.md, "Hostile input").

Every pattern is anchored and read with `fullmatch` in Python (`re.match` with `$`
accepts a trailing newline); pydantic's own regex engine has no such gap, and the same
text is the OpenAPI pattern, so the published schema is as strict as the server. The
annotated types here are what the request models of `cmp.models` and the integration
payloads of `cmp.integrations` are built from: one edge for every way in.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import idna
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, StringConstraints

SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
SUBJECT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LANG_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
API_KEY_ID_PATTERN = r"^[a-z0-9]{1,32}$"

# An event id as a banner sends it and the receipt's path names it: a hyphenated UUID.
EVENT_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

SITE_ID_RE = re.compile(SITE_ID_PATTERN)
EVENT_ID_RE = re.compile(EVENT_ID_PATTERN)
SUBJECT_ID_RE = re.compile(SUBJECT_ID_PATTERN)
VERSION_RE = re.compile(VERSION_PATTERN)
API_KEY_ID_RE = re.compile(API_KEY_ID_PATTERN)

# Free text from outside: no C0/C1 controls (NUL included), DEL, or the noncharacters
# U+FFFE/U+FFFF (lone surrogates never get this far: the JSON parser refuses them).
# PostgreSQL cannot store NUL, and the others only hide what a record says.
_CONTROLS = r"\u0000-\u001F\u007F-\u009F\uFFFE\uFFFF"
TEXT_PATTERN = rf"^[^{_CONTROLS}]*$"
# Long texts (policy bodies) may break lines.
MULTILINE_PATTERN = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF]*$"


def version_number(text: str) -> int | None:
    """A policy version given as text (path or query): ASCII digits only, else None."""
    return int(text) if VERSION_RE.fullmatch(text) else None


# A page URL: http(s), optional userinfo, host (name or [IPv6]), optional port, path,
# query, fragment. Only scheme, host, port and path are kept: userinfo carries
# credentials, query and fragment carry personal data.
_URL_CHAR = rf"[^{_CONTROLS}\u0020]"
PAGE_URL_PATTERN = (
    r"^(https?)://"
    r"(?:[^\u0000-\u0020\u007F-\u009F\uFFFE\uFFFF/?#@\[\]]*@)?"
    r"([A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])"
    r"(:[0-9]{0,5})?"
    rf"(/[^{_CONTROLS}\u0020?#]*)?"
    rf"(?:\?[^{_CONTROLS}\u0020#]*)?"
    rf"(?:#{_URL_CHAR}*)?$"
)
PAGE_URL_RE = re.compile(PAGE_URL_PATTERN)
URL_PATH_PATTERN = rf"^/[^{_CONTROLS}\u0020?#]*$"

# Client clocks: a window that PostgreSQL, Python and the canonical text all represent
# exactly (asyncpg turns datetime.min into -infinity; year 1 with an offset overflows).
OCCURRED_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)

# A site's origin as an admin may write it: http(s) in any case, a host name (Unicode
# too) or [IPv6], an optional port and at most a trailing slash; never a path, query,
# fragment or userinfo. `normal_origin` turns it into the form a browser sends.
ORIGIN_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"([^\u0000-\u0020\u007F-\u009F/?#@\[\]:\\]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$"
)
ORIGIN_RE = re.compile(ORIGIN_PATTERN)
DEFAULT_PORTS = {"http": 80, "https": 443}


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Lang = Annotated[str, StringConstraints(pattern=LANG_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=TEXT_PATTERN)]
LongText = Annotated[str, StringConstraints(max_length=20_000, pattern=MULTILINE_PATTERN)]


def page_url(value: str) -> str:
    """The stored form of a page URL: scheme://host[:port]/path (see PAGE_URL_PATTERN)."""
    found = PAGE_URL_RE.fullmatch(value)
    if found is None:
        raise ValueError("not an http(s) URL")
    scheme, host, port, path = found.group(1, 2, 3, 4)
    return f"{scheme}://{host}{port or ''}{path or ''}"


def normal_origin(value: str) -> str:
    """An origin in the one form a browser sends it (RFC 6454 serialisation): scheme and
    host lower-case, an international name as punycode (UTS #46, as browsers map it), an
    IPv6 address compressed, the scheme's default port and a trailing slash dropped.
    ValueError when it is not an http(s) origin with a valid host and port."""
    found = ORIGIN_RE.fullmatch(value)
    if found is None:
        raise ValueError("must be http(s)://host[:port], without path, query or fragment")
    scheme = value.partition(":")[0].lower()
    host, port = found.group(1), found.group(2)
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError("not a valid IPv6 address") from None
    else:
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise ValueError("not a valid host name") from None
    number = int(port[1:]) if port else DEFAULT_PORTS[scheme]
    if not 0 < number < 65536:
        raise ValueError("port must be between 1 and 65535")
    return (
        f"{scheme}://{host}" if number == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{number}"
    )


def origin_allowed(origins: Collection[str], origin: str) -> bool:
    """Whether a request's Origin header is one of a site's origins (stored in normal
    form): as sent when it matches (what browsers send), else in its normal form."""
    if origin in origins:
        return True
    try:
        return normal_origin(origin) in origins
    except ValueError:
        return False


# RFC 3339's date-time, as the document's format states it: pydantic alone also takes a
# space for the T, no seconds, "+0100", a decimal comma and Unix seconds as a number.
RFC3339_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339_text(value: Any) -> Any:
    """A client's timestamp only as RFC 3339 text; a datetime made by our own code passes."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339_RE.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 timestamp, such as 2026-11-21T10:00:00Z")


def occurred_in_window(value: datetime) -> datetime:
    """In UTC, from 2000-01-01 on; the upper bound (now + 5 min) is the pipeline's."""
    # The year test comes first: converting year 1 or 9999 with an offset overflows.
    if not 2000 <= value.year <= 9998:
        raise ValueError("must lie between 2000-01-01 and now + 5 minutes")
    value = value.astimezone(UTC)
    if value < OCCURRED_FLOOR:
        raise ValueError("must lie between 2000-01-01 and now + 5 minutes")
    return value


PageUrl = Annotated[
    str,
    StringConstraints(max_length=2000, pattern=PAGE_URL_PATTERN),
    AfterValidator(page_url),
]
OccurredAt = Annotated[
    AwareDatetime, BeforeValidator(rfc3339_text), AfterValidator(occurred_in_window)
]
Origin = Annotated[
    str, StringConstraints(max_length=300, pattern=ORIGIN_PATTERN), AfterValidator(normal_origin)
]


# A site's own user id (linked users, docs/linked-users.md).
MAX_USER_ID_CHARS: Final = 256
# A user id as it arrives: free text (no control anywhere, a trailing newline included),
# with one character that is not white space (ECMAScript's `\s`, spelled out so that
# Python and a JSON Schema validator read it alike).
_SPACE = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
USER_ID_PATTERN: Final = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACE}][^{_CONTROLS}]*$"
_USER_ID_RE = re.compile(USER_ID_PATTERN)


def normal_user_id(text: str) -> str:
    """The user id as the site means it: NFC, without surrounding white space; case is
    kept (an account id's case may matter). ValueError for what cannot be one.

    The text as sent is checked before it is trimmed, so what trimming would hide (a
    trailing newline, a C1 control) is refused as the OpenAPI pattern says."""
    if len(text) > MAX_USER_ID_CHARS:
        raise ValueError(f"user_id must be at most {MAX_USER_ID_CHARS} characters")
    if not _USER_ID_RE.fullmatch(text):
        raise ValueError("user_id must not be empty or contain control characters")
    value = unicodedata.normalize("NFC", text).strip()
    if any(unicodedata.category(c) in ("Cs", "Cn") for c in value):
        raise ValueError("user_id must not contain unassigned code points")
    return value
