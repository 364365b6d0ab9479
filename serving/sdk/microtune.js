/*! microtune 0.2.0: behaviour events to POST /v1/events, decisions from POST /v1/score applied to data-mt-slot (docs/sdk.md) */
(function (w, d) {
  "use strict";
  var VERSION = "0.2.0", QKEY = "mt:queue", SKEY = "mt:session", CKEY = "mt:consent";
  var cfg = {
    endpoint: "", pageType: "other", userId: null, batchSize: 20, flushMs: 2000,
    maxQueue: 500, gapMinutes: 30, minHoverMs: 100, scrollMs: 250,
    decide: true, decideEvery: 8, askGapMs: 5000, cooldownMs: 60000
  };
  // The slot that shows each action: <div data-mt-slot="discount" hidden>...</div>
  var SLOTS = {
    show_discount_popup: "discount", highlight_size_guide: "size-guide",
    emphasize_cta: "cta", show_social_proof: "social-proof"
  };
  var queue = [], timer = null, backoff = 0, inflight = false, consent = false, started = false;
  var hovers = {}, lastScroll = 0, lastY = 0, scrollTimer = null, saveTimer = null, sess = null;
  var dev = null, brw = null, sending = null, fresh = 0, asking = false, askedAt = 0;

  function now() { return Date.now(); }
  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }
  function get(key) { try { return JSON.parse(w.localStorage.getItem(key)); } catch (e) { return null; } }
  function put(key, v) { try { w.localStorage.setItem(key, JSON.stringify(v)); } catch (e) { /* full or off */ } }
  // The queue reaches localStorage at most once a second (and at once when the page is
  // hidden or left): writing it on every event would cost the page more than the event.
  function persist() { clearTimeout(saveTimer); saveTimer = null; put(QKEY, queue); if (sess) put(SKEY, sess); }
  function save() { if (!saveTimer) saveTimer = setTimeout(persist, 1000); }

  // A session ends after gapMinutes without an event, as the platform's sessions do.
  function session() {
    var t = now();
    if (!sess) sess = get(SKEY);
    if (!sess || t - sess.t > cfg.gapMinutes * 60000) { sess = { id: "s-" + uuid(), t: t }; put(SKEY, sess); }
    sess.t = t;
    return sess.id;
  }
  function device() {
    var ua = navigator.userAgent, wd = w.innerWidth || 1024;
    if (/iPad|Tablet/.test(ua) || (wd >= 700 && wd < 1024 && /Mobi|Android/.test(ua))) return "tablet";
    return /Mobi|Android|iPhone/.test(ua) || wd < 700 ? "mobile" : "desktop";
  }
  function browser() {
    var ua = navigator.userAgent;
    return /Edg\//.test(ua) ? "edge" : /Chrome\//.test(ua) ? "chrome" : /Firefox\//.test(ua) ? "firefox"
      : /Safari\//.test(ua) ? "safari" : "other";
  }

  // One event of the contract (docs/events.md); its id is made here, so a retry is idempotent.
  function track(type, extra) {
    if (!consent) return null;
    var e = {
      event_id: "e-" + uuid(), session_id: session(), ts: new Date().toISOString(),
      event_type: type, page_type: cfg.pageType, device: dev || (dev = device()),
      browser: brw || (brw = browser()), consent: true
    };
    if (cfg.userId) e.user_id = String(cfg.userId);
    for (var k in extra || {}) if (extra[k] != null) e[k] = extra[k];
    queue.push(e);
    if (queue.length > cfg.maxQueue) queue.splice(0, queue.length - cfg.maxQueue);
    save();
    if (queue.length >= cfg.batchSize) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushMs);
    if (type !== "exposure" && ++fresh >= cfg.decideEvery) decide("events");
    return e;
  }

  function drop(batch) {
    var sent = {};
    for (var i = 0; i < batch.length; i++) sent[batch[i].event_id] = 1;
    queue = queue.filter(function (e) { return !sent[e.event_id]; });
    save();
  }
  function retry() {
    inflight = false;
    backoff = Math.min(backoff ? backoff * 2 : 1000, 60000);
    clearTimeout(timer);
    timer = setTimeout(flush, backoff);
  }
  // Send the oldest batch. text/plain keeps it a simple request (no preflight); the
  // server reads the body as JSON. A refusal (4xx but 429) is final: the server keeps
  // the refused events in its quarantine; anything else is retried with back-off.
  function flush(leaving) {
    clearTimeout(timer);
    timer = null;
    if (inflight && !leaving) return sending;
    if (!consent || !queue.length) return Promise.resolve();
    var batch = queue.slice(0, cfg.batchSize), body = JSON.stringify({ events: batch });
    var url = cfg.endpoint + "/v1/events";
    if (leaving && navigator.sendBeacon && navigator.sendBeacon(url, body)) { drop(batch); return Promise.resolve(); }
    inflight = true;
    return (sending = fetch(url, { method: "POST", body: body, headers: { "Content-Type": "text/plain" }, keepalive: !!leaving })
      .then(function (r) {
        if (r.status >= 500 || r.status === 429) return retry();
        inflight = false;
        backoff = 0;
        drop(batch);
        if (queue.length) return flush();
      }, retry));
  }

  // --- The decision applier. It asks POST /v1/score after decideEvery new events, on
  // exit intent and on the cart page (no sooner than askGapMs after the last ask, nor
  // within cooldownMs of the last decision shown), once the events it has are sent.
  function decide(why) {
    var t = now();
    if (!consent || !cfg.decide || asking || t - askedAt < cfg.askGapMs) return Promise.resolve(null);
    if (sess && sess.shown && t - sess.shown.t < cfg.cooldownMs) return Promise.resolve(null);
    asking = true;
    askedAt = t;
    fresh = 0;
    var ask = { session_id: session(), context: { page_type: cfg.pageType, device: dev || (dev = device()), browser: brw || (brw = browser()) } };
    if (cfg.userId) ask.user_id = String(cfg.userId);
    function done(s) { asking = false; if (s && s.decision) show(s, why); return s || null; }
    return flush().then(function () {
      return fetch(cfg.endpoint + "/v1/score", { method: "POST", body: JSON.stringify(ask), headers: { "Content-Type": "application/json" } });
    }).then(function (r) { return r.ok ? r.json() : null; }).then(done, function () { return done(null); });
  }
  // Show an action in its slots: unhide them, fill [data-mt-param] from the params, mark
  // them data-mt-action and tell the page (a microtune:decision event). An action with no
  // slot on the page is not shown; one shown sends an exposure event, once.
  function apply(a, params, silent) {
    var slots = d.querySelectorAll('[data-mt-slot="' + (SLOTS[a] || a) + '"]');
    for (var i = 0; i < slots.length; i++) {
      var el = slots[i], ps = el.querySelectorAll("[data-mt-param]");
      for (var j = 0; j < ps.length; j++) {
        var v = params[ps[j].getAttribute("data-mt-param")];
        if (v != null) ps[j].textContent = v;
      }
      el.hidden = false;
      el.setAttribute("data-mt-action", a);
      el.dispatchEvent(new CustomEvent("microtune:decision", { bubbles: true, detail: { action: a, params: params } }));
    }
    if (slots.length && !silent) track("exposure", { element_id: a });
    return slots.length > 0;
  }
  function show(s, why) {
    var acts = s.decision.actions || [];
    for (var i = 0; i < acts.length; i++) {
      var a = acts[i];
      if (a.action === "none" || !apply(a.action, a.params || {})) continue;
      session();
      sess.shown = { a: a.action, p: a.params || {}, t: now(), why: why };
      persist();
    }
  }
  // A decision shown on an earlier page of the session stays for its ttl_s (600 s by default).
  function reshow() {
    var s = sess || get(SKEY), v = s && s.shown;
    if (v && now() - v.t < (v.p.ttl_s || 600) * 1000) apply(v.a, v.p, true);
  }
  function onLeave(ev) { if (!ev.relatedTarget && ev.clientY <= 0) decide("exit"); }

  function marked(el, attr) { return el && el.closest ? el.closest("[" + attr + "]") : null; }
  function name(el, attr) { return el.getAttribute(attr) || el.id || el.tagName.toLowerCase(); }

  function onOver(ev) {
    var el = marked(ev.target, "data-mt-track");
    if (el && !hovers[name(el, "data-mt-track")]) hovers[name(el, "data-mt-track")] = now();
  }
  function onOut(ev) {
    onLeave(ev);
    var el = marked(ev.target, "data-mt-track");
    if (!el || (ev.relatedTarget && el.contains(ev.relatedTarget))) return;
    var id = name(el, "data-mt-track"), t0 = hovers[id];
    delete hovers[id];
    if (t0 && now() - t0 >= cfg.minHoverMs) track("hover", { element_id: id, duration_ms: now() - t0 });
  }
  function onClick(ev) {
    var t = ev.target, el;
    if ((el = marked(t, "data-mt-zoom"))) return track("image_zoom", { element_id: name(el, "data-mt-zoom") });
    if ((el = marked(t, "data-mt-size-guide"))) return track("size_guide_open", { element_id: name(el, "data-mt-size-guide") });
    if ((el = marked(t, "data-mt-cart-add"))) return track("add_to_cart", { element_id: name(el, "data-mt-cart-add"), cart_value: +el.getAttribute("data-mt-value") || 0 });
    if ((el = marked(t, "data-mt-cart-remove"))) return track("remove_from_cart", { element_id: name(el, "data-mt-cart-remove"), cart_value: +el.getAttribute("data-mt-value") || 0 });
    el = marked(t, "data-mt-track");
    track("click", { element_id: el ? name(el, "data-mt-track") : t.tagName.toLowerCase() });
  }
  // Scrolls are throttled: one event per scrollMs at most, with the depth and speed then.
  function onScroll() {
    if (scrollTimer) return;
    scrollTimer = setTimeout(function () {
      scrollTimer = null;
      var y = w.scrollY || d.documentElement.scrollTop, t = now(), h = d.documentElement.scrollHeight;
      var depth = Math.max(0, Math.min(1, (y + w.innerHeight) / Math.max(h, 1)));
      var speed = lastScroll ? Math.min(100000, Math.abs(y - lastY) * 1000 / Math.max(t - lastScroll, 1)) : 0;
      lastScroll = t;
      lastY = y;
      track("scroll", { scroll_depth: Math.round(depth * 1000) / 1000, scroll_velocity: Math.round(speed) });
    }, cfg.scrollMs);
  }
  function onHide() { if (d.visibilityState === "hidden") { persist(); flush(true); } }

  function start() {
    if (started || !consent) return;
    started = true;
    d.addEventListener("mouseover", onOver, true);
    d.addEventListener("mouseout", onOut, true);
    d.addEventListener("click", onClick, true);
    w.addEventListener("scroll", onScroll, { passive: true });
    d.addEventListener("visibilitychange", onHide);
    w.addEventListener("pagehide", function () { persist(); flush(true); });
    track("page_view", {});
    reshow();
    if (cfg.pageType === "cart" || cfg.pageType === "checkout") decide("cart");
    else if (queue.length) flush();
  }

  var api = {
    version: VERSION,
    init: function (options) {
      for (var k in options || {}) if (options[k] != null) cfg[k] = options[k];
      cfg.endpoint = String(cfg.endpoint).replace(/\/$/, "");
      if (get(CKEY) === true) api.consent(true);
      return api;
    },
    // Nothing is captured, kept or sent before consent; withdrawing it drops what waits.
    consent: function (given) {
      consent = !!given;
      put(CKEY, consent);
      if (consent) { queue = get(QKEY) || []; start(); }
      else {
        queue = []; clearTimeout(timer); clearTimeout(saveTimer); saveTimer = null;
        try { w.localStorage.removeItem(QKEY); } catch (e) { /* off */ }
      }
    },
    track: track,
    flush: function () { return flush(false); },
    decide: function () { askedAt = 0; return decide("asked"); },
    pending: function () { return queue.length; },
    sessionId: function () { return (sess || get(SKEY) || {}).id || null; }
  };
  w.microtune = api;
  var me = d.currentScript;
  if (me && me.hasAttribute("data-endpoint")) {
    api.init({ endpoint: me.getAttribute("data-endpoint"), pageType: me.getAttribute("data-page-type") || "other" });
  }
})(window, document);
