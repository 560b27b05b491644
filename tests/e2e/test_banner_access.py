"""banner.js for every visitor: keyboard only, Esc, focus, contrast, page language, GPC,
a strict nonce CSP, and screenshots (tests/artifacts/) to look at."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.e2e.harness import ARTIFACTS, NONCE, CmpServer, E2ESite, Pages, open_site_page, state
from tests.e2e.pageutil import Browsing, banner_visible, choose, cookies, data_layer

if TYPE_CHECKING:
    from playwright.async_api import Page

IN_DIALOG = "() => !!document.activeElement.closest('#cmp-root [role=dialog]')"
ACTIVE = """() => { const a = document.activeElement;
    return {tag: a.tagName, act: a.getAttribute('data-cmp-act'), id: a.id}; }"""

# WCAG 2.x relative luminance and contrast of each text-bearing element against the
# background actually behind it (the first opaque ancestor background, alpha-blended).
CONTRAST = """root => {
  const rgba = c => { const m = c.match(/[\\d.]+/g).map(Number);
                      return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const lum = ([r, g, b]) => { const f = v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3]));
  const background = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c); if (c[3] === 1) break; }
    return layers.reverse().reduce((acc, c) => over(c, acc), [255, 255, 255]); };
  const out = [];
  for (const el of root.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const bg = background(el), fg = over(rgba(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out.push({text: el.textContent.trim().slice(0, 80), ratio: (a + 0.05) / (b + 0.05)});
  }
  return out;
}"""


async def test_keyboard_only_focus_starts_in_the_dialog_stays_there_and_enter_accepts(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    assert await page.evaluate(IN_DIALOG)
    assert (await page.evaluate(ACTIVE))["tag"] == "BUTTON"
    seen = []
    for _ in range(8):  # more presses than controls: Tab must wrap inside the dialog
        await page.keyboard.press("Tab")
        assert await page.evaluate(IN_DIALOG)
        seen.append(await page.evaluate(ACTIVE))
    assert {"accept_all", "reject_all", "settings"} <= {s["act"] for s in seen}
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(IN_DIALOG)

    while (await page.evaluate(ACTIVE))["act"] != "accept_all":
        await page.keyboard.press("Tab")
    async with page.expect_response(lambda r: r.url.endswith("/events")) as info:
        await page.keyboard.press("Enter")
    assert (await info.value).status == 201
    subject = (await cookies(browsing.context))["cmp_sid"]["value"]
    assert (await state(cmp, site, subject))["action"] == "accept_all"

    # Reopen from the page's link by keyboard: Space toggles, Enter saves, focus comes back.
    await page.focus("#settings-link")
    await page.keyboard.press("Enter")
    assert await page.is_visible("#cmp-root [data-cmp-layer='2']")
    assert (await page.evaluate(ACTIVE))["id"] == "cmp-p-preferences"
    await page.keyboard.press("Space")
    while (await page.evaluate(ACTIVE))["act"] != "save":
        await page.keyboard.press("Tab")
    async with page.expect_response(lambda r: r.url.endswith("/events")) as info:
        await page.keyboard.press("Enter")
    assert (await info.value).status == 201
    got = await state(cmp, site, subject)
    assert got["action"] == "custom" and got["purposes"]["preferences"] is False
    assert (await page.evaluate(ACTIVE))["id"] == "settings-link"


async def test_escape_steps_back_but_never_decides(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    page = await open_site_page(browsing, pages, cmp, site)
    posts: list[str] = []
    # Decisions only: showing the settings layer posts an impression, which decides nothing.
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/events") else None,
    )
    await page.keyboard.press("Escape")
    assert await banner_visible(page) and await page.evaluate(IN_DIALOG)

    await page.keyboard.press("Enter")  # focus starts on the settings button
    assert await page.is_visible("#cmp-root [data-cmp-layer='2']")
    await page.keyboard.press("Space")  # toggles the first purpose on…
    assert await page.is_checked("#cmp-p-preferences")
    await page.keyboard.press("Escape")  # …but Esc goes back without saving it
    assert await page.is_visible("#cmp-root [data-cmp-layer='1']")
    assert await page.is_hidden("#cmp-root [data-cmp-layer='2']")
    assert (await page.evaluate(ACTIVE))["act"] == "settings"
    await page.keyboard.press("Escape")
    assert await banner_visible(page)

    await page.wait_for_timeout(300)
    assert posts == []
    assert "cmp_consent" not in await cookies(browsing.context)
    assert not any(isinstance(e, list) and e[1] == "update" for e in await data_layer(page))
    await page.keyboard.press("Enter")
    assert not await page.is_checked("#cmp-p-preferences")  # the abandoned toggle is gone


async def contrasts(page: Page) -> list[dict[str, Any]]:
    return await page.eval_on_selector("#cmp-root", CONTRAST)  # type: ignore[no-any-return]


async def test_text_contrast_is_at_least_4_5_and_focus_is_visible(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    await browsing.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    page = await open_site_page(browsing, pages, cmp, site)
    first = await contrasts(page)
    await page.keyboard.press("Enter")
    second = await contrasts(page)
    texts = {c["text"] for c in first + second}
    assert {"Godta alle", "Avvis alle", "Lagre valg", "Statistikk"} <= texts
    assert any("GPC" in t for t in texts)  # the note is measured too
    low = [c for c in first + second if c["ratio"] < 4.5]
    assert low == [], low

    await page.keyboard.press("Escape")
    await page.keyboard.press("Tab")
    outline = await page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; }""")
    assert outline[0] == "solid" and outline[1] >= 2 and outline[2] == "rgb(17, 24, 39)"


async def test_the_page_language_picks_the_texts(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    expected = {
        "sv": "sv",
        "sv-SE": "sv",
        "no": "nb",
        "nn-NO": "nb",
        "nb": "nb",
        "en-GB": "en",
        "de": "nb",
        "": "nb",
    }
    for lang, picked in expected.items():
        page = await open_site_page(browsing, pages, cmp, site, lang)
        assert await page.text_content("#cmp-title") == site.texts[picked]["title"], lang
        assert await page.get_attribute("#cmp-root", "lang") == picked
        await page.close()
    page = await open_site_page(browsing, pages, cmp, site, "sv")
    sent = await choose(page, "#cmp-root [data-cmp-layer='1'] [data-cmp-act=reject_all]")
    assert sent["language"] == "sv"


async def test_gpc_denies_marketing_even_after_accept_all(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    await browsing.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    page = await open_site_page(browsing, pages, cmp, site)
    note = await page.text_content("#cmp-root [data-cmp-layer='1'] [data-cmp-gpc]") or ""
    assert "Global Privacy Control" in note and "Markedsføring" in note
    await page.click("#cmp-root [data-cmp-act=settings]")
    assert not await page.is_checked("#cmp-p-marketing")
    assert await page.is_disabled("#cmp-p-marketing")
    await page.keyboard.press("Escape")

    sent = await choose(page, "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]")
    assert sent["action"] == "custom" and sent["purposes"]["marketing"] is False
    got = await state(cmp, site, sent["subject_id"])
    assert got["purposes"] == {
        "necessary": True,
        "preferences": True,
        "statistics": True,
        "marketing": False,
    }
    assert got["consent_mode"]["ad_storage"] == "denied"
    assert got["consent_mode"]["analytics_storage"] == "granted"
    await page.wait_for_function("() => window.statsRuns === 1")
    assert await page.evaluate("() => window.marketingRuns") is None


async def test_works_under_a_strict_nonce_csp(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    policy = f"script-src 'nonce-{NONCE}'; style-src 'nonce-{NONCE}'; object-src 'none'"
    page = await open_site_page(
        browsing, pages, cmp, site, nonce=NONCE, headers={"Content-Security-Policy": policy}
    )
    assert await banner_visible(page)
    styled = await page.eval_on_selector(
        "#cmp-root [data-cmp-act=accept_all]",
        "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el.closest('#cmp-root'))"
        ".position]",
    )
    assert styled == ["rgb(29, 78, 216)", "fixed"]
    await choose(page, "#cmp-root [data-cmp-layer='1'] [data-cmp-act=accept_all]")
    await page.wait_for_function("() => window.extRuns === 1")
    assert await page.evaluate("() => window.statsRuns") == 1
    assert await page.evaluate("() => window.cspViolations") == []
    assert not [m for m in browsing.console if "Content Security Policy" in m]


async def test_screenshots_of_the_banner_in_nb_and_sv(
    browsing: Browsing, pages: Pages, cmp: CmpServer, site: E2ESite
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for lang in ("nb", "sv"):
        page = await open_site_page(browsing, pages, cmp, site, lang)
        await page.screenshot(path=str(ARTIFACTS / f"banner-{lang}.png"))
        await page.click("#cmp-root [data-cmp-act=settings]")
        await page.screenshot(path=str(ARTIFACTS / f"banner-{lang}-settings.png"), full_page=True)
        await page.close()
    await browsing.context.add_init_script(
        "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
    )
    page = await open_site_page(browsing, pages, cmp, site, "nb")
    await page.set_viewport_size({"width": 390, "height": 780})
    await page.screenshot(path=str(ARTIFACTS / "banner-nb-mobile-gpc.png"))
    box = await page.locator("#cmp-root [role=dialog]").bounding_box()
    assert box is not None and box["width"] <= 390
    for name in ("banner-nb.png", "banner-sv.png", "banner-nb-settings.png"):
        assert (ARTIFACTS / name).stat().st_size > 5_000
