"""Link tokens (docs/linked-users.md): what a site's backend gives its page so that the
banner can link the visitor's subject to the signed-in user, `window.cmp.identify(token)`.

    token   = base64url(user_id) "." expires "." base64url(HMAC-SHA256(secret, message))
    message = "cmp-link-v1\n" site_id "\n" user_id "\n" expires

`expires` is Unix seconds, at most `MAX_TTL_SECONDS` ahead; base64url without padding;
`secret` is the site's link secret as the text it was given (`POST …/link-secret`). Only
the standard library on either side (Python's hmac, Node's crypto, the browser never
signs); one algorithm, so there is nothing to choose wrongly (JWS's `alg`). No I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Final

from cmp.values import normal_user_id

MAX_TTL_SECONDS: Final = 600
_TOKEN: Final = re.compile(r"([A-Za-z0-9_-]{1,1400})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
NOT_VALID: Final = "the link token's signature is not valid"


class Malformed(ValueError):
    """Not a link token at all (422)."""


class Refused(ValueError):
    """A token of the right form this site does not accept: forged, of another site or
    another secret, or expired (401)."""


def message(site_id: str, user_id: str, expires: int) -> bytes:
    return f"cmp-link-v1\n{site_id}\n{user_id}\n{expires}".encode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def mint(secret: str, site_id: str, user_id: str, expires: int) -> str:
    """A token as a site's backend makes it (docs/linked-users.md has it in 10 lines)."""
    mac = hmac.digest(secret.encode(), message(site_id, user_id, expires), hashlib.sha256)
    return f"{_b64url(user_id.encode())}.{expires}.{_b64url(mac)}"


def verify(secret: str | None, site_id: str, token: str, now: float) -> str:
    """The normalised user id a token of `site_id` names; Malformed or Refused otherwise
    (`secret` None: the site has none, so no token verifies)."""
    found = _TOKEN.fullmatch(token)
    if found is None:
        raise Malformed("token must be <base64url user id>.<expires>.<base64url signature>")
    encoded, expires_text, sig = found.groups()
    try:
        user_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Malformed("the token's user id is not base64url of UTF-8 text") from None
    expires = int(expires_text)
    expected = mint(secret, site_id, user_id, expires).rsplit(".", 1)[1] if secret else ""
    if not hmac.compare_digest(sig, expected):
        raise Refused(NOT_VALID)
    # Checked after the signature, so these are only ever said of a genuine token.
    if expires <= now:
        raise Refused("the link token has expired")
    if expires > now + MAX_TTL_SECONDS:
        raise Malformed(f"a link token lives at most {MAX_TTL_SECONDS} seconds")
    try:
        return normal_user_id(user_id)
    except ValueError as exc:
        raise Malformed(str(exc)) from None
