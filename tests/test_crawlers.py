"""Known crawlers (cmp/crawlers.py): the package's list, matched as the package matches it."""

from __future__ import annotations

import crawleruseragents

from cmp.crawlers import is_crawler

BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
]


def test_every_example_of_the_list_is_answered_as_the_package_answers_it() -> None:
    # cmp reads the package's data file rather than import it (it keeps every entry's
    # description and examples): the answers must be the package's own.
    examples = [
        ua
        for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for ua in entry.get("instances", [])
    ]
    assert len(examples) > 1000
    for ua in examples + BROWSERS + ["", "curl", "Googlebot", "googlebot"]:
        assert is_crawler(ua) == crawleruseragents.is_crawler(ua), ua
    assert sum(map(is_crawler, examples)) > 0.95 * len(examples)
    assert not any(map(is_crawler, BROWSERS))
    assert is_crawler(None) is False
