"""The e2e test site's policy: four purposes, realistic wording in nb, sv and en.

The nb texts carry a policy_text with a <script> in it: banner.js must leave it out.
"""

from __future__ import annotations

from typing import Any

LANGS = ("nb", "sv", "en")


def _t(nb: str, sv: str, en: str) -> dict[str, str]:
    return {"nb": nb, "sv": sv, "en": en}


def e2e_policy(material: bool = True) -> dict[str, Any]:
    """A realistic policy in nb, sv and en (what a Nordic shop would publish)."""
    purposes: list[dict[str, Any]] = [
        {
            "key": "necessary",
            "required": True,
            "consent_mode": ["security_storage"],
            "title": _t("Nødvendige", "Nödvändiga", "Necessary"),
            "description": _t(
                "Trengs for handlekurven, innlogging og sikkerhet.",
                "Behövs för varukorgen, inloggning och säkerhet.",
                "Needed for the basket, login and security.",
            ),
            "services": [
                {"key": "session", "name": "Økt", "cookies": ["sid"], "retention_days": 0}
            ],
        },
        {
            "key": "preferences",
            "consent_mode": ["functionality_storage", "personalization_storage"],
            "title": _t("Preferanser", "Preferenser", "Preferences"),
            "description": _t(
                "Husker språk og visningsvalg.",
                "Kommer ihåg språk och visning.",
                "Remembers language and display choices.",
            ),
        },
        {
            "key": "statistics",
            "consent_mode": ["analytics_storage"],
            "title": _t("Statistikk", "Statistik", "Statistics"),
            "description": _t(
                "Anonym besøksstatistikk som hjelper oss å forbedre sidene.",
                "Anonym besöksstatistik som hjälper oss att förbättra sidorna.",
                "Anonymous visitor statistics that help us improve the pages.",
            ),
            "services": [
                {
                    "key": "google-analytics",
                    "name": "Google Analytics",
                    "cookies": ["_ga", "_ga_*"],
                    "retention_days": 730,
                    "description": _t(
                        "Analyseverktøy fra Google.",
                        "Analysverktyg från Google.",
                        "Google's analytics tool.",
                    ),
                }
            ],
        },
        {
            "key": "marketing",
            "gpc": True,
            "consent_mode": ["ad_storage", "ad_user_data", "ad_personalization"],
            "title": _t("Markedsføring", "Marknadsföring", "Marketing"),
            "description": _t(
                "Annonser fra oss på andre nettsteder.",
                "Annonser från oss på andra webbplatser.",
                "Our ads on other websites.",
            ),
            "services": [
                {
                    "key": "facebook-pixel",
                    "name": "Facebook pixel",
                    "cookies": ["_fbp"],
                    "retention_days": 90,
                }
            ],
        },
    ]
    texts = {
        "nb": {
            "title": "Vi bruker informasjonskapsler",
            "body": "Vi bruker informasjonskapsler som trengs for at nettbutikken skal "
            "virke. Med ditt samtykke bruker vi også statistikk og markedsføring. "
            "Du kan endre valget ditt når som helst.",
            "accept_all": "Godta alle",
            "reject_all": "Avvis alle",
            "settings": "Innstillinger",
            "save": "Lagre valg",
            "policy_text": "Hele personvernerklæringen. </script><script>alert(1)</script>",
        },
        "sv": {
            "title": "Vi använder kakor",
            "body": "Vi använder kakor som behövs för att webbutiken ska fungera. Med ditt "
            "samtycke använder vi också statistik och marknadsföring. Du kan ändra "
            "ditt val när som helst.",
            "accept_all": "Godkänn alla",
            "reject_all": "Avvisa alla",
            "settings": "Inställningar",
            "save": "Spara val",
        },
        "en": {
            "title": "We use cookies",
            "body": "We use cookies the shop needs to work. With your consent we also use "
            "statistics and marketing. You can change your choice at any time.",
            "accept_all": "Accept all",
            "reject_all": "Reject all",
            "settings": "Settings",
            "save": "Save choices",
        },
    }
    return {
        "material": material,
        "policy_url": "https://shop.example/personvern",
        "purposes": purposes,
        "texts": texts,
    }


# What a Nordic shop selling in California and Texas would word for its notices.
NOTICE_TEXTS = {
    "opt_out": {
        "nb": {
            "title": "Valgene dine i nettbutikken",
            "body": "Vi bruker informasjonskapsler til statistikk og markedsføring, og deler "
            "opplysninger med annonsepartnere. Du kan reservere deg når som helst.",
        },
        "sv": {
            "title": "Dina val i webbutiken",
            "body": "Vi använder kakor för statistik och marknadsföring och delar uppgifter "
            "med annonspartner. Du kan tacka nej när som helst.",
        },
        "en": {
            "title": "Your choices in the shop",
            "body": "We use cookies for statistics and marketing and share information with "
            "advertising partners. You can opt out at any time.",
        },
    },
    "notice_only": {
        "nb": {
            "title": "Informasjonskapsler i nettbutikken",
            "body": "Nettbutikken bruker informasjonskapsler til handlekurv, statistikk og "
            "markedsføring.",
        },
        "sv": {
            "title": "Kakor i webbutiken",
            "body": "Webbutiken använder kakor för varukorg, statistik och marknadsföring.",
        },
        "en": {
            "title": "Cookies in the shop",
            "body": "The shop uses cookies for the basket, statistics and marketing.",
        },
    },
}
