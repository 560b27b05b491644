"""The impression path: raw body → validated showings → counted rows (docs/api.md).

Cheaper than the event path by design: no chain, no record, no policy rules beyond the
version and variant existing; a showing by a known crawler is answered but not counted.
The steps and their rejections are the event pipeline's (`parse`: 400/422, the rate
tokens: 429, `store`: 202 or 503), with their own rate-limit buckets, since a visitor
who never decides sends impressions on every page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydantic import ValidationError

from cmp.catalog import Catalog
from cmp.commit import GroupCommitter, Refused
from cmp.crawlers import is_crawler
from cmp.errorcap import ERRORS_MAX
from cmp.ingest.facts import Facts
from cmp.ingest.parse import Rejected, invalid, parse_model
from cmp.ingest.pipeline import admit
from cmp.jurisdiction import site_rules
from cmp.models import ImpressionBatch, ImpressionIn
from cmp.ratelimit import RateLimiter
from cmp.store.events import DUPLICATE
from cmp.store.impressions import NewImpression
from cmp.store.sites import StoredSite

# A batch of impressions costs one rate token per this many (a page view sends one).
PER_TOKEN = 10
VISITOR_BYTES = 8


@dataclass(frozen=True, slots=True)
class Counted:
    counted: int
    duplicates: int
    ignored: int  # sent by a known crawler: answered, not counted


def visitor_digest(subject_key: bytes, subject_id: str) -> bytes:
    """What an impression keeps of its subject: a keyed digest that tells visitors apart
    within the site's day and nothing else (the key never leaves the server)."""
    return hashlib.blake2b(
        subject_id.encode("utf-8"), digest_size=VISITOR_BYTES, key=subject_key[:64]
    ).digest()


def parse_impressions(raw: bytes) -> tuple[list[ImpressionIn], str]:
    """One impression or `{"impressions": [...]}`; the impressions and pointer prefix."""
    if b'"impressions"' not in raw:
        return [parse_model(raw, ImpressionIn, "invalid-impression")], ""
    try:
        batch = ImpressionBatch.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["loc"] == ("impressions",) and e["type"] == "missing" for e in errors):
            return [parse_model(raw, ImpressionIn, "invalid-impression")], ""
        raise invalid(errors, "invalid-impression") from None
    return batch.impressions, "/impressions/"


class Impressions:
    """The impression path, bound to the catalogue, its limiter and its committer."""

    def __init__(
        self,
        catalog: Catalog,
        limiter: RateLimiter,
        committer: GroupCommitter[NewImpression],
    ) -> None:
        self._catalog = catalog
        self._limiter = limiter
        self._committer = committer

    def admit(self, site_id: str, facts: Facts, cost: int = 1) -> None:
        """Take `cost` tokens of the impressions' own (site, network) bucket before any
        parsing, or 429."""
        admit(self._limiter, site_id, facts, cost)

    async def count(self, site: StoredSite, raw: bytes, facts: Facts) -> Counted:
        shown, prefix = parse_impressions(raw)
        self.admit(site.site_id, facts, (len(shown) - 1) // PER_TOKEN)
        await self._check(site, shown, prefix)
        if is_crawler(facts.user_agent):
            return Counted(counted=0, duplicates=0, ignored=len(shown))
        rule = site_rules(site).match(facts.location).id
        rows = [
            NewImpression(
                site_id=site.site_id,
                impression_id=i.impression_id,
                visitor=visitor_digest(site.subject_key, i.subject_id),
                policy_version=i.policy_version,
                surface=i.surface,
                variant=i.variant or "",
                received_at=facts.received_at,
                rule=rule,
            )
            for i in shown
        ]
        try:
            outcomes = await self._committer.submit(rows)
        except Refused as exc:
            raise Rejected(
                422,
                "unstorable",
                f"the database refused these impressions (SQLSTATE {exc.sqlstate})",
            ) from None
        duplicates = outcomes.count(DUPLICATE)
        return Counted(counted=len(rows) - duplicates, duplicates=duplicates, ignored=0)

    async def _check(self, site: StoredSite, shown: list[ImpressionIn], prefix: str) -> None:
        """Each names a policy version the site has; the whole request is refused else."""
        current, _ = await self._catalog.policy_versions(site.site_id)
        errors = []
        for n, i in enumerate(shown):
            at = f"{prefix}{n}/" if prefix else "/"
            if i.policy_version > current:
                errors.append(
                    {
                        "pointer": f"{at}policy_version",
                        "detail": f"policy version {i.policy_version} does not exist",
                    }
                )
        if errors:
            raise Rejected(
                422,
                "invalid-impression",
                "request body failed validation",
                errors[:ERRORS_MAX],
                errors_omitted=max(0, len(errors) - ERRORS_MAX),
            )
