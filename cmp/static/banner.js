/*! cmp banner.js 1.0 - the consent banner served by cmp at /v1/sites/{site_id}/banner.js.
 * Vanilla JS, no dependencies, no build step. How to embed it: docs/banner.md. */
(function (w, d) {
  "use strict";
  // Filled in by the server (cmp/api/banner.py) with the site's configuration.
  var C = /*CMP_CONFIG*/null;
  // A second copy on the same page would fight the first over the DOM and the dataLayer.
  if (!C || (w.cmp && w.cmp.version)) return;

  var VERSION = "1.0";
  var SOURCE = "cmp-banner/" + VERSION;
  var me = d.currentScript;
  // The API lives wherever this script came from: strip "/v1/sites/<id>/banner.js".
  var BASE = ((me && me.src) || "").replace(/\/v1\/sites\/.*$/, "");
  var API = BASE + "/v1/sites/" + encodeURIComponent(C.site_id);
  var EVENTS = API + "/events", IMPRESSIONS = API + "/impressions";
  // Under a strict CSP the page's nonce is the only way our <style> is allowed.
  var NONCE = (me && (me.nonce || me.getAttribute("nonce"))) || "";
  var CONSENT = "cmp_consent", SID = "cmp_sid", QUEUE = "cmp_queue";
  var SIGNALS = ["ad_storage", "ad_user_data", "ad_personalization", "analytics_storage",
    "functionality_storage", "personalization_storage", "security_storage"];
  var ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
  var QUEUE_MAX = 50, ATTEMPTS_MAX = 20, RETRY_FIRST = 5000, RETRY_MAX = 300000;
  var MAX_AGE = C.consent_validity_days * 86400;
  var DAY_MS = 864e5;
  // The visitor's jurisdiction rule, matched by the server from the trusted location header.
  var MODEL = (C.rule && C.rule.model) || "opt_in", OPT_IN = MODEL === "opt_in";

  // --- 1. Google Consent Mode: the rule's defaults, before any tag can run --------------------
  w.dataLayer = w.dataLayer || [];
  if (typeof w.gtag !== "function") {
    // gtag must push the `arguments` object itself: that is what gtag.js/GTM read.
    w.gtag = function () { w.dataLayer.push(arguments); };
  }
  function defaults(model, region) {
    var s = signals(baseline(model, null), model !== "opt_in");
    s.wait_for_update = 500;
    if (region) s.region = region;
    w.gtag("consent", "default", s);
  }
  // Without a region: the visitor's rule; with one: every rule for Google's own location of
  // the visitor (the most specific region wins there).
  defaults(MODEL);
  (C.regions || []).forEach(function (r) { defaults(r[1], r[0]); });

  // --- texts ---------------------------------------------------------------------------------
  var UI = {
    nb: { back: "Tilbake", always: "Alltid på", services: "Tjenester",
      cookies: "Informasjonskapsler", retention: "Lagringstid", days: "dager",
      session: "til nettleseren lukkes", policy: "Les personvernerklæringen",
      receipt: "Last ned en signert kvittering på samtykket ditt.",
      controller: "Behandlingsansvarlig", withdraw: "Trekk tilbake samtykke",
      dns: "Ikke selg eller del personopplysningene mine",
      gpc: "Nettleseren din sender signalet Global Privacy Control (GPC). Vi respekterer det: " +
        "{p} er slått av.",
      opt_out: ["Dine personvernvalg", "Vi bruker informasjonskapsler og lignende teknologi " +
        "til formålene som er beskrevet i innstillingene, og kan dele opplysninger med " +
        "partnere. Du kan reservere deg når som helst: velg «{dns}», eller slå av det du ikke " +
        "ønsker i innstillingene."],
      notice_only: ["Vi bruker informasjonskapsler", "Dette nettstedet bruker " +
        "informasjonskapsler og lignende teknologi. I personvernerklæringen kan du lese hva " +
        "vi bruker og hvorfor."] },
    sv: { back: "Tillbaka", always: "Alltid på", services: "Tjänster", cookies: "Kakor",
      retention: "Lagringstid", days: "dagar", session: "tills webbläsaren stängs",
      policy: "Läs integritetspolicyn",
      receipt: "Ladda ner ett signerat kvitto på ditt samtycke.",
      controller: "Personuppgiftsansvarig", withdraw: "Återkalla samtycke",
      dns: "Sälj eller dela inte mina personuppgifter",
      gpc: "Din webbläsare skickar signalen Global Privacy Control (GPC). Vi respekterar den: " +
        "{p} är avstängt.",
      opt_out: ["Dina integritetsval", "Vi använder kakor och liknande tekniker för de " +
        "ändamål som beskrivs i inställningarna och kan dela uppgifter med partner. Du kan " +
        "när som helst tacka nej: välj ”{dns}”, eller stäng av det du inte vill ha i " +
        "inställningarna."],
      notice_only: ["Vi använder kakor", "Den här webbplatsen använder kakor och liknande " +
        "tekniker. I integritetspolicyn kan du läsa vad vi använder och varför."] },
    en: { back: "Back", always: "Always on", services: "Services", cookies: "Cookies",
      retention: "Retention", days: "days", session: "until the browser closes",
      policy: "Read the privacy policy",
      receipt: "Download a signed receipt of your consent.",
      controller: "Controller", withdraw: "Withdraw consent",
      dns: "Do not sell or share my personal information",
      gpc: "Your browser sends a Global Privacy Control (GPC) signal. We honour it: " +
        "{p} is switched off.",
      opt_out: ["Your privacy choices", "We use cookies and similar technologies for the " +
        "purposes described in the settings, and may share information with partners. You " +
        "can opt out at any time: choose “{dns}”, or switch off what you do not want in the " +
        "settings."],
      notice_only: ["We use cookies", "This website uses cookies and similar technologies. " +
        "The privacy policy tells what we use and why."] }
  };
  var NORWEGIAN = { nb: 1, no: 1, nn: 1 };

  // The page language (<html lang>), mapped onto the site's languages, else the default.
  function pageLang() {
    var tag = (d.documentElement.getAttribute("lang") || "").toLowerCase();
    var primary = tag.split("-")[0];
    var wanted = [tag, primary].concat(NORWEGIAN[primary] ? ["nb", "no", "nn"] : []);
    for (var i = 0; i < wanted.length; i++) {
      if (wanted[i] && C.languages.indexOf(wanted[i]) >= 0 && C.texts[wanted[i]]) return wanted[i];
    }
    // A language added to the site after its policy was published has no texts yet.
    return C.texts[C.default_language] ? C.default_language : Object.keys(C.texts)[0];
  }

  function uiOf(lang) {
    var primary = lang.split("-")[0];
    return UI[primary] || (NORWEGIAN[primary] && UI.nb) || UI.en;
  }

  function local(map, lang) {
    if (!map) return "";
    if (map[lang]) return map[lang];
    if (map[C.default_language]) return map[C.default_language];
    for (var k in map) if (map[k]) return map[k];
    return "";
  }

  // --- stored choice -------------------------------------------------------------------------
  function readCookie(name) {
    var parts = d.cookie ? d.cookie.split(/;\s*/) : [];
    for (var i = 0; i < parts.length; i++) {
      var at = parts[i].indexOf("=");
      if (parts[i].slice(0, at) === name) {
        try { return decodeURIComponent(parts[i].slice(at + 1)); } catch (e) { return null; }
      }
    }
    return null;
  }

  function writeCookie(name, value) {
    d.cookie = name + "=" + encodeURIComponent(value) + "; Path=/; Max-Age=" + MAX_AGE +
      "; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
  }

  // {v: policy version, p: purposes, t: seconds since epoch, e: event id, a: action}
  function stored() {
    var c;
    try { c = JSON.parse(readCookie(CONSENT)); } catch (e) { return null; }
    if (!c || typeof c.v !== "number" || typeof c.t !== "number" || !c.p || typeof c.p !== "object") {
      return null;
    }
    return c;
  }

  function statusOf(c) {
    if (!c) return OPT_IN ? "none" : "default";
    if (c.v < C.material_version) return "stale";
    if ((c.t + MAX_AGE) * 1000 <= Date.now()) return "expired";
    return "valid";
  }

  function gpc() { return navigator.globalPrivacyControl === true; }

  // What a stored choice grants now, as the server's state does (docs/jurisdictions.md):
  // opt_in grants only required purposes without a valid choice; opt_out and notice_only
  // grant everything then, but keep an old choice's refusals; GPC always denies `gpc` ones.
  function baseline(model, c) {
    var valid = statusOf(c) === "valid", out = {}, gpcOn = gpc();
    C.purposes.forEach(function (p) {
      out[p.key] = p.required || (!(p.gpc && gpcOn) && (valid ? c.p[p.key] === true
        : model !== "opt_in" && !(c && c.p[p.key] === false)));
    });
    return out;
  }

  function effective(c) { return baseline(MODEL, c); }

  // Whether purposes beyond the required ones may run now: a valid choice, or a granting rule.
  function live(status) { return status === "valid" || (!OPT_IN && status !== "none"); }

  function signals(purposes, valid) {
    var on = { security_storage: true }, out = {};
    if (valid) {
      C.purposes.forEach(function (p) {
        if (purposes[p.key]) p.consent_mode.forEach(function (s) { on[s] = true; });
      });
    }
    SIGNALS.forEach(function (s) { out[s] = on[s] ? "granted" : "denied"; });
    return out;
  }

  function copy(o) { var r = {}; for (var k in o) r[k] = o[k]; return r; }

  function getConsent() {
    var c = stored(), status = statusOf(c), p = effective(c), sid = readCookie(SID);
    return {
      site_id: C.site_id, subject_id: sid, status: status,
      needs_prompt: status !== "valid" && status !== "default",
      rule: C.rule ? C.rule.id : null, model: MODEL,
      policy_version: c ? c.v : null, current_policy_version: C.policy_version,
      action: (c && c.a) || null, purposes: p, consent_mode: signals(p, live(status)),
      gpc: gpc(), event_id: (c && c.e) || null,
      recorded_at: c ? new Date(c.t * 1000).toISOString() : null
    };
  }

  // --- 2. gating: consent update, dataLayer event, deferred scripts ---------------------------
  var granted = null; // purposes of a valid choice; null while there is none
  var waiting = 0; // identify calls pending: gated tags wait for the user's state
  var listeners = [];

  function apply(c, changed) {
    var p = effective(c);
    granted = p;
    w.gtag("consent", "update", signals(p, true));
    w.dataLayer.push({ event: "cmp_consent_update",
      cmp: { purposes: copy(p), policy_version: c ? c.v : null, action: (c && c.a) || null } });
    activateAll();
    if (!changed) return;
    var state = getConsent();
    listeners.forEach(function (fn) {
      // One broken listener must not stop the others, yet its error should still surface.
      try { fn(state); } catch (e) { setTimeout(function () { throw e; }); }
    });
  }

  var GATED = 'script[type="text/plain"][data-cmp-purpose]';

  function activate(el) {
    if (!granted || waiting || el.hasAttribute("data-cmp-activated")) return;
    var need = (el.getAttribute("data-cmp-purpose") || "").split(/[\s,]+/).filter(Boolean);
    for (var i = 0; i < need.length; i++) if (granted[need[i]] !== true) return;
    if (!need.length) return;
    // Marked before running: a re-scan (another choice, a DOM mutation) never runs it twice.
    el.setAttribute("data-cmp-activated", "");
    var s = d.createElement("script");
    for (i = 0; i < el.attributes.length; i++) {
      var a = el.attributes[i];
      if (!/^(type|data-cmp-purpose|data-cmp-type|data-cmp-activated|nonce)$/.test(a.name)) {
        s.setAttribute(a.name, a.value);
      }
    }
    var type = el.getAttribute("data-cmp-type");
    if (type) s.type = type;
    // The nonce attribute reads empty once the browser hid it; the property keeps it.
    if (el.nonce) s.nonce = el.nonce;
    // Inserted scripts are async by default; keep document order unless the tag said async.
    s.async = el.hasAttribute("async");
    if (!el.src) s.text = el.text;
    el.parentNode.insertBefore(s, el.nextSibling);
  }

  function activateAll() {
    if (!granted || waiting) return;
    var found = d.querySelectorAll(GATED);
    for (var i = 0; i < found.length; i++) activate(found[i]);
  }

  if (w.MutationObserver) {
    // Gated tags parsed after this script, or added later by the page, follow the choice too.
    new MutationObserver(function (records) {
      if (!granted) return;
      for (var i = 0; i < records.length; i++) {
        var added = records[i].addedNodes;
        for (var j = 0; j < added.length; j++) {
          var n = added[j];
          if (n.nodeType !== 1) continue;
          if (n.matches && n.matches(GATED)) activate(n);
          else if (n.querySelectorAll) {
            var inner = n.querySelectorAll(GATED);
            for (var k = 0; k < inner.length; k++) activate(inner[k]);
          }
        }
      }
    }).observe(d.documentElement, { childList: true, subtree: true });
  }

  // --- 3. delivery: an outbox in localStorage, retried with the same event_id -----------------
  // Impressions (`i` set, `t` when made) share it: counted once by their id, dropped after a
  // day (the server deduplicates over a day), and given up first when the outbox is full.
  function loadQueue() {
    try {
      var q = JSON.parse(w.localStorage.getItem(QUEUE) || "[]");
      return Array.isArray(q) ? q.filter(fresh) : [];
    } catch (e) { return []; }
  }

  function fresh(x) { return !x.i || Date.now() - x.t < DAY_MS; }

  function saveQueue(q) {
    q = q.filter(fresh);
    while (q.length > QUEUE_MAX) {
      var at = 0;
      while (at < q.length - 1 && !q[at].i) at++;
      q.splice(q[at].i ? at : 0, 1);
    }
    try {
      if (q.length) w.localStorage.setItem(QUEUE, JSON.stringify(q));
      else w.localStorage.removeItem(QUEUE);
    } catch (e) { /* storage disabled: delivery is then best effort */ }
  }

  function keep(item) {
    saveQueue(loadQueue().filter(function (x) { return x.id !== item.id; }).concat([item]));
  }

  function drop(id) {
    saveQueue(loadQueue().filter(function (x) { return x.id !== id; }));
  }

  function beacon(item) {
    try {
      return !!(navigator.sendBeacon &&
        navigator.sendBeacon(item.url, new Blob([item.body], { type: "text/plain" })));
    } catch (e) { return false; }
  }

  var retryTimer = 0, retryDelay = RETRY_FIRST;

  function retryLater() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () { retryTimer = 0; flush(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX);
  }

  // The event is written to the outbox *before* it is sent and leaves it only when the server
  // has answered: a page closed mid-request resends on the next load (a duplicate, still 201).
  function send(item) {
    item.n = (item.n || 0) + 1;
    if (item.n > ATTEMPTS_MAX) return drop(item.id);
    keep(item);
    if (!w.fetch) {
      beacon(item);
      return retryLater();
    }
    var failed = function () {
      // A browser that cannot send a preflighted keepalive fetch may still send a beacon
      // (text/plain needs no preflight); the outbox keeps the event until a fetch confirms.
      beacon(item);
      retryLater();
    };
    try {
      w.fetch(item.url, { method: "POST", keepalive: true,
        headers: { "Content-Type": "application/json" }, body: item.body })
        .then(function (r) {
          if (r.ok) { retryDelay = RETRY_FIRST; return drop(item.id); }
          if (r.status === 429 || r.status === 408 || r.status >= 500) return retryLater();
          return r.text().then(function (text) {
            // A client clock far ahead is refused; the server's received_at is enough then.
            if (r.status === 422 && /occurred_at/.test(text) && /occurred_at/.test(item.body)) {
              var ev = JSON.parse(item.body);
              delete ev.occurred_at;
              item.body = JSON.stringify(ev);
              return send(item);
            }
            // Any other 4xx will not improve by retrying.
            drop(item.id);
            if (w.console) w.console.warn("cmp: consent event refused (" + r.status + "): " + text);
          });
        }, failed);
    } catch (e) { failed(); }
  }

  function flush() {
    loadQueue().forEach(send);
  }

  // --- 4. the choice ---------------------------------------------------------------------------
  // The subject id, made when the banner is first shown: impressions, the variant and the
  // choice all name it.
  function subject() {
    var sid = readCookie(SID);
    if (!sid || !ID_RE.test(sid)) writeCookie(SID, sid = uuid());
    return sid;
  }

  // The subject's variant, as cmp/variants.py computes it: FNV-1a 32 of the id's UTF-8 bytes
  // over 2^32, against the weights in name order.
  function variantOf(sid) {
    var names = Object.keys(C.variants || {}).sort(), b = unescape(encodeURIComponent(sid));
    var h = 0x811c9dc5, edge = 0, i;
    if (!names.length) return null;
    for (i = 0; i < b.length; i++) h = Math.imul(h ^ b.charCodeAt(i), 0x01000193) >>> 0;
    for (i = 0; i < names.length; i++) {
      edge += C.variants[names[i]].weight;
      if (h / 4294967296 < edge) return names[i];
    }
    return names[names.length - 1];
  }

  var VARIANT = null, shown = {};

  // One showing of a layer: an impression through the outbox, like an event.
  function impress(surface) {
    var id = shown[layer] = uuid();
    var im = { impression_id: id, subject_id: subject(), policy_version: C.policy_version,
      surface: surface, variant: VARIANT || undefined };
    send({ id: id, url: IMPRESSIONS, body: JSON.stringify(im), n: 0, i: 1, t: Date.now() });
  }

  // "Do not sell or share": the purposes GPC covers (sale and sharing) off, the rest kept.
  function doNotSell() {
    var chosen = effective(stored()), any = false;
    C.purposes.forEach(function (p) { if (p.gpc && !p.required) any = !(chosen[p.key] = false); });
    if (any) decide("custom", chosen);
    else decide("reject_all", {});
  }
  function uuid() {
    var c = w.crypto;
    if (c && c.randomUUID) {
      try { return c.randomUUID(); } catch (e) { /* insecure context: fall through */ }
    }
    var b = new Uint8Array(16), i, h = [];
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) h.push((b[i] + 256).toString(16).slice(1));
    h = h.join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  function decide(action, chosen) {
    var p = {}, decided = {}, blocked = false, gpcOn = gpc();
    C.purposes.forEach(function (x) {
      var on = x.required || action === "accept_all" || (action === "custom" && chosen[x.key] === true);
      if (on && !x.required && x.gpc && gpcOn) { on = false; blocked = true; }
      p[x.key] = on;
      if (!x.required) decided[x.key] = on;
    });
    // Under GPC "accept all" cannot include sale/sharing; record what was actually granted.
    if (blocked && action === "accept_all") action = "custom";
    var sid = subject(), id = uuid(), now = new Date();
    var c = { v: C.policy_version, p: p, t: Math.floor(now.getTime() / 1000), e: id, a: action };
    writeCookie(CONSENT, JSON.stringify(c));
    var ev = { event_id: id, subject_id: sid, policy_version: C.policy_version, action: action,
      language: C.languages.indexOf(lang) >= 0 ? lang : undefined,
      occurred_at: now.toISOString(), source: SOURCE,
      page_url: (location.origin + location.pathname).slice(0, 2000),
      // The showing this answers, and its variant; none for GPC's automatic refusal.
      impression_id: shown[layer], variant: layer ? VARIANT : undefined };
    if (action === "custom") ev.purposes = decided;
    send({ id: id, url: EVENTS, body: JSON.stringify(ev), n: 0 });
    close();
    apply(c, true);
  }

  // --- 5. the banner ---------------------------------------------------------------------------
  var CSS = [
    "#cmp-root{position:fixed;top:0;right:0;bottom:0;left:0;z-index:2147483000;display:flex;",
    "align-items:flex-end;justify-content:center;padding:16px;background:rgba(17,24,39,.5);",
    "font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1a1a1a;",
    "text-align:left;direction:ltr}",
    "#cmp-root[hidden],#cmp-root [hidden]{display:none!important}",
    "#cmp-root.cmp-notice{top:auto;background:none;pointer-events:none}",
    "#cmp-root.cmp-notice .cmp-dialog{pointer-events:auto;border:1px solid #d1d5db}",
    "#cmp-root *{box-sizing:border-box;margin:0;padding:0;border:0;font:inherit;color:inherit;",
    "background:none;letter-spacing:normal;text-transform:none;text-decoration:none;float:none}",
    "#cmp-root .cmp-dialog{background:#fff;color:#1a1a1a;width:100%;max-width:760px;",
    "max-height:calc(100vh - 32px);overflow:auto;border-radius:12px;padding:24px;",
    "box-shadow:0 12px 40px rgba(0,0,0,.35)}",
    "#cmp-root .cmp-title{font-size:1.25em;font-weight:700;line-height:1.3;margin-bottom:8px}",
    "#cmp-root .cmp-text{margin-bottom:12px;white-space:pre-line}",
    "#cmp-root a{color:#1d4ed8;text-decoration:underline}",
    "#cmp-root .cmp-note{background:#fef3c7;color:#3b2f00;border-left:4px solid #b45309;",
    "padding:8px 12px;margin-bottom:12px;border-radius:6px}",
    "#cmp-root .cmp-actions{display:grid;grid-template-columns:repeat(3,1fr);gap:8px;margin-top:16px}",
    "#cmp-root .cmp-btn{display:block;width:100%;min-height:44px;padding:10px 16px;",
    "border:2px solid #1d4ed8;border-radius:8px;background:#1d4ed8;color:#fff;font-weight:600;",
    "line-height:1.25;text-align:center;cursor:pointer}",
    "#cmp-root .cmp-btn:hover{background:#1e3a8a;border-color:#1e3a8a}",
    "#cmp-root .cmp-secondary{background:#fff;color:#1d4ed8}",
    "#cmp-root .cmp-secondary:hover{background:#eff6ff;color:#1e3a8a}",
    "#cmp-root .cmp-back{display:inline-block;width:auto;min-height:0;padding:4px 8px;",
    "margin-bottom:8px;border:0;background:#fff;color:#1d4ed8;text-decoration:underline}",
    "#cmp-root .cmp-back:hover{background:#eff6ff;color:#1e3a8a}",
    "#cmp-root :focus-visible{outline:3px solid #111827;outline-offset:2px}",
    "#cmp-root .cmp-purpose{border-top:1px solid #d1d5db;padding:12px 0}",
    "#cmp-root .cmp-head{display:flex;align-items:center;gap:10px}",
    "#cmp-root input[type=checkbox]{-webkit-appearance:checkbox;appearance:auto;width:22px;",
    "height:22px;flex:none;accent-color:#1d4ed8;cursor:pointer}",
    "#cmp-root input[type=checkbox]:disabled{cursor:not-allowed}",
    "#cmp-root label{font-weight:600;cursor:pointer}",
    "#cmp-root .cmp-small{font-size:.875em;color:#374151;margin-top:4px}",
    "#cmp-root .cmp-services{list-style:disc;padding-left:24px;margin-top:4px;font-size:.875em;",
    "color:#374151}",
    "#cmp-root .cmp-services strong{font-weight:600;color:#1a1a1a}",
    "@media (max-width:600px){#cmp-root{padding:8px}#cmp-root .cmp-dialog{padding:16px}",
    "#cmp-root .cmp-actions{grid-template-columns:1fr}}"
  ].join("");

  var root = null, dialog = null, first = null, second = null, builtLang = null, receiptP = null;
  var lang = pageLang(), layer = 0, before = null;

  function el(tag, cls, text, attrs) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }

  function button(text, act, cls) {
    return el("button", "cmp-btn " + cls, text, { type: "button", "data-cmp-act": act });
  }

  function gpcNote(ui) {
    var names = C.purposes.filter(function (p) { return p.gpc && !p.required; })
      .map(function (p) { return local(p.title, lang); });
    if (!gpc() || !names.length) return null;
    return el("p", "cmp-note", ui.gpc.replace("{p}", names.join(", ")), { "data-cmp-gpc": "" });
  }

  function serviceItem(s, ui) {
    var li = add(el("li"), el("strong", null, s.name));
    var desc = local(s.description, lang);
    if (desc) li.appendChild(d.createTextNode(" – " + desc));
    var facts = [];
    if (s.cookies && s.cookies.length) facts.push(ui.cookies + ": " + s.cookies.join(", "));
    if (s.retention_days === 0) facts.push(ui.retention + ": " + ui.session);
    else if (s.retention_days) facts.push(ui.retention + ": " + s.retention_days + " " + ui.days);
    if (facts.length) add(li, el("div", null, facts.join(". ")));
    return li;
  }

  function purposeBlock(p, ui) {
    var id = "cmp-p-" + p.key;
    var box = el("input", null, null, { type: "checkbox", id: id, "data-cmp-purpose-key": p.key,
      "aria-describedby": id + "-d" });
    var head = add(el("div", "cmp-head"), box, el("label", null, local(p.title, lang), { for: id }));
    if (p.required) head.appendChild(el("span", "cmp-small", "(" + ui.always + ")"));
    var block = add(el("div", "cmp-purpose"), head,
      el("p", "cmp-small", local(p.description, lang), { id: id + "-d" }));
    if (p.services && p.services.length) {
      block.appendChild(el("p", "cmp-small", ui.services + ":"));
      block.appendChild(add.apply(null, [el("ul", "cmp-services")].concat(
        p.services.map(function (s) { return serviceItem(s, ui); }))));
    }
    return block;
  }

  function build() {
    lang = pageLang();
    if (root && builtLang === lang) return;
    if (root) root.parentNode.removeChild(root);
    if (!d.getElementById("cmp-style")) {
      var style = el("style", null, CSS, { id: "cmp-style" });
      if (NONCE) style.nonce = NONCE;
      (d.head || d.documentElement).appendChild(style);
    }
    VARIANT = variantOf(subject());
    var T = (VARIANT && C.variants[VARIANT].texts[lang]) || C.texts[lang], ui = uiOf(lang);
    // A notice is worded for its model, not as a request for consent: the policy's notice
    // texts for it, else the built-in ones (docs/banner.md, Notice texts).
    var N = OPT_IN ? T : local(C.notice, lang) ||
      { title: ui[MODEL][0], body: ui[MODEL][1].replace("{dns}", ui.dns) };
    builtLang = lang;
    root = el("div", OPT_IN ? null : "cmp-notice", null, { id: "cmp-root", hidden: "", lang: lang });
    // opt_in blocks the page until a choice; the other models only inform (not modal).
    dialog = el("div", "cmp-dialog", null, OPT_IN ? { role: "dialog", "aria-modal": "true",
      "aria-labelledby": "cmp-title", "aria-describedby": "cmp-desc" }
      : { role: "region", "aria-labelledby": "cmp-title", "aria-describedby": "cmp-desc" });
    first = add(el("div", "cmp-layer", null, { "data-cmp-layer": "1" }),
      el("h2", "cmp-title", N.title, { id: "cmp-title" }),
      el("p", "cmp-text", N.body, { id: "cmp-desc" }),
      gpcNote(ui),
      add(el("p", "cmp-text", null, { "data-cmp-policy": "" }), el("a", null, ui.policy,
        { href: C.policy_url, target: "_blank", rel: "noopener" }),
        C.controller && el("span", null, " · " + ui.controller + ": " + C.controller),
        C.withdrawal_url && d.createTextNode(" · "),
        C.withdrawal_url && el("a", null, ui.withdraw,
          { href: C.withdrawal_url, target: "_blank", rel: "noopener" })),
      OPT_IN ? add(el("div", "cmp-actions"),
        button(T.settings, "settings", "cmp-secondary"),
        button(T.reject_all, "reject_all", "cmp-choice"),
        button(T.accept_all, "accept_all", "cmp-choice"))
        : add(el("div", "cmp-actions"),
          MODEL === "opt_out" && button(T.settings, "settings", "cmp-secondary"),
          MODEL === "opt_out" && button(ui.dns, "dns", "cmp-choice"),
          button("OK", "ok", "cmp-choice")));
    receiptP = add(el("p", "cmp-small", null, { "data-cmp-receipt": "" }),
      button(ui.receipt, "receipt", "cmp-back"));
    second = add.apply(null, [el("div", "cmp-layer", null, { "data-cmp-layer": "2", hidden: "" }),
      button("‹ " + ui.back, "back", "cmp-back"),
      el("h2", "cmp-title", T.settings, { id: "cmp-title2" }),
      gpcNote(ui)].concat(C.purposes.map(function (p) { return purposeBlock(p, ui); }), [
      add(el("div", "cmp-actions"),
        button(T.reject_all, "reject_all", "cmp-choice"),
        button(T.accept_all, "accept_all", "cmp-choice"),
        button(T.save, "save", "cmp-choice")), receiptP]));
    add(root, add(dialog, first, second));
    root.addEventListener("click", onClick);
    d.body.appendChild(root);
  }

  function toggles() {
    return root.querySelectorAll("input[data-cmp-purpose-key]");
  }

  function syncToggles() {
    var now = effective(stored()), gpcOn = gpc(), boxes = toggles();
    for (var i = 0; i < boxes.length; i++) {
      var p = C.purposes[i];
      boxes[i].checked = p.required || now[p.key] === true;
      boxes[i].disabled = p.required || (p.gpc && gpcOn);
    }
  }

  function focusables() {
    var all = dialog.querySelectorAll("button, a[href], input:not([disabled])"), out = [];
    for (var i = 0; i < all.length; i++) if (all[i].getClientRects().length) out.push(all[i]);
    return out;
  }

  function showLayer(n, surface) {
    layer = n;
    if (!shown[n]) impress(n === 2 ? "settings" : surface || "banner");
    first.hidden = n !== 1;
    second.hidden = n !== 2;
    dialog.setAttribute("aria-labelledby", n === 1 ? "cmp-title" : "cmp-title2");
    if (n === 1) dialog.setAttribute("aria-describedby", "cmp-desc");
    else dialog.removeAttribute("aria-describedby");
    if (n === 2) syncToggles();
    var c = stored();
    receiptP.hidden = !(c && c.e);
    var target = n === 1 ? first.querySelector("button")
      : second.querySelector("input:not([disabled])") || second.querySelector("button");
    // A notice the visitor did not ask for does not take the focus from the page.
    if (target && (OPT_IN || n === 2 || before)) target.focus();
  }

  function open(n, surface, asked) {
    if (!d.body) return ready(function () { open(n, surface, asked); });
    build();
    if (!layer) {
      before = asked === false ? null : d.activeElement;
      root.hidden = false;
      d.addEventListener("keydown", onKey, true);
      if (OPT_IN) d.addEventListener("focusin", onFocusIn, true);
    }
    showLayer(n, surface);
  }

  function close() {
    if (!layer) return;
    layer = 0;
    shown = {};
    root.hidden = true;
    d.removeEventListener("keydown", onKey, true);
    d.removeEventListener("focusin", onFocusIn, true);
    // Back to where the visitor was (e.g. the "Cookie settings" link), not the top of the page.
    if (before && before !== d.body && before.focus && d.documentElement.contains(before)) {
      before.focus();
    } else if (d.activeElement && d.activeElement.blur) {
      d.activeElement.blur();
    }
    before = null;
  }

  function onClick(e) {
    var t = e.target.closest ? e.target.closest("[data-cmp-act]") : null;
    if (!t) return;
    var act = t.getAttribute("data-cmp-act");
    if (act === "settings") showLayer(2);
    else if (act === "receipt") receipt().catch(warn);
    else if (act === "back") showLayer(1);
    else if (act === "dns") doNotSell();
    else if (act === "ok") {
      // The notice's acknowledgement, recorded like an accept_all (what GPC allows of it).
      if (statusOf(stored()) === "valid") close();
      else decide("accept_all", {});
    }
    else if (act === "save") {
      var chosen = {}, boxes = toggles();
      for (var i = 0; i < boxes.length; i++) {
        chosen[boxes[i].getAttribute("data-cmp-purpose-key")] = boxes[i].checked;
      }
      decide("custom", chosen);
    } else decide(act, {});
  }

  function onKey(e) {
    if (e.key === "Escape" || e.key === "Esc") {
      // Esc steps back; it never decides anything. Closing needs an existing valid choice.
      e.preventDefault();
      e.stopPropagation();
      if (layer === 2) showLayer(1);
      else if (!OPT_IN || statusOf(stored()) === "valid") close();
      return;
    }
    if (e.key !== "Tab" || !OPT_IN) return;
    var list = focusables(), active = d.activeElement;
    if (!list.length) return;
    var firstEl = list[0], lastEl = list[list.length - 1];
    if (!dialog.contains(active)) {
      e.preventDefault();
      firstEl.focus();
    } else if (e.shiftKey && active === firstEl) {
      e.preventDefault();
      lastEl.focus();
    } else if (!e.shiftKey && active === lastEl) {
      e.preventDefault();
      firstEl.focus();
    }
  }

  function onFocusIn(e) {
    // aria-modal: focus may not wander onto the page behind the dialog.
    if (layer && !root.contains(e.target)) {
      var list = focusables();
      if (list.length) list[0].focus();
    }
  }

  // --- the visitor's receipt: their record, a signed checkpoint and the inclusion proof ----------
  // The pair (event id, subject id) is the capability; only this browser holds both.
  function receipt(opts) {
    var c = stored(), sid = readCookie(SID);
    if (!c || !c.e || !sid || !w.fetch) return Promise.reject(new Error("cmp: no recorded choice"));
    var url = BASE + "/v1/sites/" + encodeURIComponent(C.site_id) + "/receipts/" +
      encodeURIComponent(c.e) + "?subject_id=" + encodeURIComponent(sid);
    function attempt(n) {
      return w.fetch(url, { cache: "no-store", credentials: "omit" }).then(function (r) {
        // 202: not in a signed checkpoint yet; 404 while the event still waits in the outbox.
        var queued = loadQueue().some(function (x) { return x.id === c.e; });
        if ((r.status === 202 || (r.status === 404 && queued)) && n < 10) {
          var secs = Math.min(parseInt(r.headers.get("Retry-After"), 10) || 1, 10);
          return new Promise(function (ok) { setTimeout(ok, secs * 1000); })
            .then(function () { return attempt(n + 1); });
        }
        if (r.status !== 200) throw new Error("cmp: no receipt (" + r.status + ")");
        return r.json();
      });
    }
    return attempt(1).then(function (doc) {
      if (!opts || opts.download !== false) {
        var a = el("a", null, null, { download: "consent-receipt-" + c.e + ".json",
          href: URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)],
            { type: "application/json" })) });
        d.body.appendChild(a);
        a.click();
        d.body.removeChild(a);
        setTimeout(function () { URL.revokeObjectURL(a.href); }, 10000);
      }
      return doc;
    });
  }

  function warn(e) { if (w.console) w.console.warn(String(e)); }

  function ready(fn) {
    if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  // --- linked users: the site's signed-in user (docs/linked-users.md) ---------------------------
  // A direct fetch, not the outbox: the token lives minutes and the page mints a new one on
  // each load, and the answer, the user's state, is wanted now. While it is pending, gated
  // tags and the first showing wait (at most WAIT_MS): device B never flashes the banner.
  var deferred = false, WAIT_MS = 3000;

  function identify(token) {
    var was = readCookie(CONSENT), done = false;
    waiting++;
    function settle() {
      if (done) return;
      done = true;
      if (!--waiting) resume();
    }
    setTimeout(settle, WAIT_MS);
    var body = JSON.stringify({ token: String(token), event_id: uuid() });
    return new Promise(function (ok) { ok(w.fetch(API + "/subjects/" +
      encodeURIComponent(subject()) + "/identify", { method: "POST", credentials: "omit",
      headers: { "Content-Type": "text/plain" }, body: body })); })
      .then(function (r) {
        return r.json().then(null, function () { return {}; }).then(function (b) {
          if (!r.ok) throw new Error("cmp: identify refused (" + r.status + "): " + (b.detail || ""));
          // A choice made here meanwhile, or not yet delivered, is newer than the answer.
          if (readCookie(CONSENT) === was && !loadQueue().some(function (x) { return !x.i; })) {
            adopt(b.state);
          }
          settle();
          return getConsent();
        });
      }).then(null, function (e) { settle(); throw e; });
  }

  // The user's state in force becomes this device's choice (cookie, gating, Consent Mode).
  function adopt(s) {
    if (!s || s.status !== "valid") return;
    var c = stored(), n = { v: s.policy_version, p: s.purposes,
      t: Math.floor(Date.parse(s.recorded_at) / 1000), a: s.action };
    // The receipt needs this subject's own event.
    if (c && c.e === s.event_id) n.e = c.e;
    var same = statusOf(c) === "valid" && c.v === n.v &&
      C.purposes.every(function (p) { return c.p[p.key] === n.p[p.key]; });
    writeCookie(CONSENT, JSON.stringify(n));
    if (layer) close();
    if (!same) apply(n, true);
  }

  function resume() {
    activateAll();
    if (deferred) {
      deferred = false;
      if (statusOf(stored()) !== "valid") open(1, initial ? "reprompt" : "banner", false);
    }
  }

  // --- 6. start --------------------------------------------------------------------------------
  var initial = stored(), status0 = statusOf(initial);
  if (live(status0)) apply(initial, false);
  else if ((C.regions || []).some(function (r) { return r[1] !== "opt_in"; })) {
    // A region default may grant where Google places the visitor; this rule does not.
    w.gtag("consent", "update", signals({}, false));
  }
  var gpcOff = C.purposes.some(function (p) { return p.gpc && !p.required; });
  // GPC is an opt-out: under a granting rule it is recorded at once, without a click.
  if (!OPT_IN && status0 !== "valid" && gpc() && gpcOff) doNotSell();

  d.addEventListener("click", function (e) {
    var t = e.target && e.target.closest ? e.target.closest("[data-cmp-open]") : null;
    if (t && !(root && root.contains(t))) {
      e.preventDefault();
      open(2);
    }
  });

  w.addEventListener("online", flush);

  w.cmp = {
    version: VERSION,
    getConsent: getConsent,
    onChange: function (fn) {
      listeners.push(fn);
      return function () { listeners = listeners.filter(function (f) { return f !== fn; }); };
    },
    show: function (which) { open(which === "settings" ? 2 : 1); },
    withdraw: function () { decide("withdraw", {}); },
    identify: identify,
    receipt: receipt
  };

  ready(function () {
    activateAll();
    // A showing again after a choice that no longer holds is a re-prompt.
    if (status0 !== "valid") {
      if (waiting) deferred = true;
      else open(1, initial ? "reprompt" : "banner", false);
    }
    if (loadQueue().length) flush();
  });
})(window, document);
