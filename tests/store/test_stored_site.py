"""A stored site is the site itself plus its subject key, which no dump or repr shows."""

from __future__ import annotations

from datetime import UTC, datetime

from cmp.api.json import dumps
from cmp.models import Site
from cmp.store.sites import StoredSite

KEY = bytes(range(32))
LINK_KEY = bytes(range(32, 64))


def stored() -> StoredSite:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    return StoredSite.model_construct(
        site_id="t-site",
        name="Shop",
        origins=["https://shop.example"],
        languages=["nb"],
        default_language="nb",
        consent_validity_days=365,
        retention_days=1825,
        created_at=now,
        updated_at=now,
        controller_name=None,
        controller_contact=None,
        jurisdiction=None,
        withdrawal_url=None,
        subject_key=KEY,
        stats_link_key=LINK_KEY,
    )


def test_the_subject_key_is_in_no_dump_or_repr() -> None:
    site = stored()
    assert site.subject_key == KEY
    assert "subject_key" not in site.model_dump()
    assert "subject_key" not in site.model_dump(mode="json")
    assert b"subject_key" not in site.model_dump_json().encode()
    assert b"subject_key" not in dumps(site)
    assert KEY.hex() not in repr(site) and repr(KEY) not in repr(site)


def test_the_stats_link_key_is_in_no_dump_or_repr() -> None:
    site = stored()
    assert site.stats_link_key == LINK_KEY
    assert "stats_link_key" not in site.model_dump(mode="json")
    assert b"stats_link_key" not in dumps(site)
    assert LINK_KEY.hex() not in repr(site) and repr(LINK_KEY) not in repr(site)


def test_a_stored_site_dumps_exactly_the_fields_of_a_site() -> None:
    assert set(stored().model_dump()) == set(Site.model_fields)
