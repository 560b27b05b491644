"""Micro timings behind two reasons given in code comments (figures live in loadtest/README.md).

    python -m loadtest.micro

- `cmp/api/json.py`: orjson against the stdlib encoder on one state document.
- `cmp/api/banner.py`: rendering banner.js (script JSON, sha256, gzip -9), the work the
  render cache saves per request.

Best of five repeats; no server, no database.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable
from typing import Any

from cmp.api.banner import render
from cmp.api.json import dumps

STATE: dict[str, Any] = {
    "site_id": "shop",
    "subject_id": str(uuid.uuid4()),
    "status": "valid",
    "needs_prompt": False,
    "policy_version": 3,
    "current_policy_version": 3,
    "action": "custom",
    "purposes": {"necessary": True, "preferences": True, "statistics": False, "marketing": False},
    "services": {"session": True, "google-analytics": False, "facebook-pixel": False},
    "consent_mode": {
        "ad_storage": "denied",
        "ad_user_data": "denied",
        "ad_personalization": "denied",
        "analytics_storage": "denied",
        "functionality_storage": "granted",
        "personalization_storage": "granted",
        "security_storage": "granted",
    },
    "gpc": False,
    "event_id": str(uuid.uuid4()),
    "recorded_at": "2026-11-30T10:00:00.123456Z",
    "expires_at": "2027-11-30T10:00:00.123456Z",
}


def _purpose(key: str, services: int) -> dict[str, Any]:
    words = {"nb": f"{key} (nb)", "en": f"{key} (en)"}
    return {
        "key": key,
        "required": key == "necessary",
        "gpc": key == "marketing",
        "consent_mode": ["analytics_storage"],
        "title": words,
        "description": words,
        "services": [
            {
                "key": f"{key}-{i}",
                "name": f"Service {i}",
                "cookies": ["_a", "_b_*"],
                "retention_days": 365,
                "description": words,
            }
            for i in range(services)
        ],
    }


# A four-purpose policy in two languages, the shape banner.config builds.
BANNER_CONFIG: dict[str, Any] = {
    "site_id": "shop",
    "api": "https://cmp.example",
    "languages": ["nb", "en"],
    "default_language": "nb",
    "policy_version": 3,
    "purposes": [_purpose(k, 2) for k in ("necessary", "preferences", "statistics", "marketing")],
    "texts": {
        lang: {
            "title": "Cookies",
            "body": "Vi bruker informasjonskapsler. " * 8,
            "accept_all": "Godta alle",
            "reject_all": "Avvis alle",
            "settings": "Innstillinger",
            "save": "Lagre",
        }
        for lang in ("nb", "en")
    },
}


def best(fn: Callable[[], object], number: int) -> float:
    """Seconds per call, best of five repeats."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def main() -> None:
    def stdlib() -> bytes:
        return json.dumps(STATE, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    fast, slow = best(lambda: dumps(STATE), 100_000), best(stdlib, 100_000)
    print(f"state document: orjson {fast * 1e6:.2f} µs, stdlib json {slow * 1e6:.2f} µs")
    print(f"banner.js render: {best(lambda: render(BANNER_CONFIG), 300) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
