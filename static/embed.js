/* affnet ad slots. Publishers paste, where the ad goes:

     <div class="affnet-slot" data-affnet-slot="KEY" data-affnet-format="300x250"
          style="display:block;width:300px;max-width:100%;height:250px;overflow:hidden"></div>
     <script async src="https://AFFNET/static/embed.js"></script>

   The placeholder reserves the slot's size before anything loads, so the page never shifts. This
   script asks affnet which ad to show, draws it in a sandboxed iframe (it cannot touch the page),
   measures when at least half of it has been on screen for a second, and then tells affnet once.
   If affnet cannot be reached it gives up quietly: the reserved space stays empty and nothing is
   thrown on the page.

   window.affnet.reload()          asks again for every slot on the page (single-page sites call it
                                    after a route change); reload(element) for one slot.
   window.affnet.scan()            draws placeholders added since the last scan. */
(function () {
  "use strict";
  var w = window;
  var d = document;
  var SIZES = { "300x250": [300, 250], "728x90": [728, 90], "160x600": [160, 600], "320x50": [320, 50],
                "native": [0, 120] };
  var SANDBOX = "allow-popups allow-popups-to-escape-sandbox";
  var TIMEOUT_MS = 4000;
  var VISIBLE_RATIO = 0.5;
  var VISIBLE_MS = 1000;

  function base() {
    var script = d.currentScript;
    if (!script || !script.src) {
      var found = d.querySelectorAll("script[src*='/static/embed.js']");
      script = found.length ? found[found.length - 1] : null;
    }
    var src = script && script.src ? script.src : "";
    return src.replace(/\/static\/embed\.js(?:[?#].*)?$/, "");
  }

  var BASE;
  try {
    if (w.affnet && w.affnet.__affnet) {
      w.affnet.scan(); // the snippet was pasted more than once: one copy does the work
      return;
    }
    BASE = base();
  } catch (e) {
    return;
  }

  function stateOf(el) {
    if (!el.__affnet) {
      el.__affnet = { seq: 0, observer: null, timer: null, onVisibility: null, counted: false };
    }
    return el.__affnet;
  }

  function reserve(el) {
    var size = SIZES[el.getAttribute("data-affnet-format")];
    if (!size) {
      return false;
    }
    // The snippet's own style does this before the script loads; set it again in case a page's
    // Content-Security-Policy dropped inline styles (these are set through the DOM, which it allows).
    var s = el.style;
    if (!s.display) { s.display = "block"; }
    if (!s.width) { s.width = size[0] ? size[0] + "px" : "100%"; }
    if (!s.height) { s.height = size[1] + "px"; }
    if (!s.maxWidth) { s.maxWidth = "100%"; }
    if (!s.overflow) { s.overflow = "hidden"; }
    return true;
  }

  function stopWatching(st) {
    if (st.observer) { st.observer.disconnect(); st.observer = null; }
    if (st.timer) { clearTimeout(st.timer); st.timer = null; }
    if (st.onVisibility) { d.removeEventListener("visibilitychange", st.onVisibility); st.onVisibility = null; }
  }

  function getJSON(url) {
    if (!w.fetch || !w.Promise) {
      return { then: function (_, fail) { fail(new Error("unsupported")); } };
    }
    var controller = w.AbortController ? new AbortController() : null;
    var timer = null;
    var timeout = new Promise(function (_, reject) {
      timer = setTimeout(function () {
        if (controller) { controller.abort(); }
        reject(new Error("timeout"));
      }, TIMEOUT_MS);
    });
    var request = fetch(url, { credentials: "omit", mode: "cors", cache: "no-store",
                               signal: controller ? controller.signal : undefined })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      });
    return Promise.race([request, timeout]).then(function (value) {
      clearTimeout(timer);
      return value;
    }, function (error) {
      clearTimeout(timer);
      throw error;
    });
  }

  function beacon(url) {
    try {
      if (w.fetch) {
        fetch(url, { method: "POST", credentials: "omit", mode: "cors", keepalive: true })["catch"](function () {});
      } else if (navigator.sendBeacon) {
        navigator.sendBeacon(url);
      }
    } catch (e) { /* the view is lost, the page is not */ }
  }

  function frame(answer) {
    var f = d.createElement("iframe");
    f.setAttribute("sandbox", SANDBOX);
    f.setAttribute("title", "Advertisement");
    f.setAttribute("scrolling", "no");
    f.setAttribute("frameborder", "0");
    f.setAttribute("referrerpolicy", "origin");
    var width = answer.width ? answer.width + "px" : "100%";
    f.style.cssText = "border:0;margin:0;padding:0;display:block;overflow:hidden;width:" + width +
      ";height:" + answer.height + "px";
    if (answer.width) { f.width = String(answer.width); }
    f.height = String(answer.height);
    return f;
  }

  function place(el, child) {
    while (el.firstChild) { el.removeChild(el.firstChild); }
    el.appendChild(child);
  }

  // Counts the view once at least half the ad has been on screen, with the tab visible, for a second.
  function watch(el, st, viewUrl) {
    if (!w.IntersectionObserver) { return; } // cannot tell whether it is seen: never claim it was
    var visible = false;
    function count() {
      st.timer = null;
      if (!visible || d.hidden || st.counted) { return; }
      st.counted = true;
      stopWatching(st);
      el.setAttribute("data-affnet-viewed", "true");
      beacon(viewUrl);
    }
    function update() {
      if (visible && !d.hidden) {
        if (!st.timer && !st.counted) { st.timer = setTimeout(count, VISIBLE_MS); }
      } else if (st.timer) {
        clearTimeout(st.timer);
        st.timer = null;
      }
    }
    st.observer = new IntersectionObserver(function (entries) {
      var entry = entries[entries.length - 1];
      visible = entry.isIntersecting && entry.intersectionRatio >= VISIBLE_RATIO;
      update();
    }, { threshold: [0, VISIBLE_RATIO, 1] });
    st.observer.observe(el);
    st.onVisibility = update;
    d.addEventListener("visibilitychange", update);
  }

  function show(el, st, answer) {
    if (answer && answer.status === "ad" && answer.frame_url && answer.view_url) {
      var f = frame(answer);
      f.src = answer.frame_url;
      place(el, f);
      el.setAttribute("data-affnet-state", "ad");
      watch(el, st, answer.view_url);
    } else if (answer && answer.status === "fallback" && answer.fallback !== "collapse" && answer.html) {
      var g = frame(answer);
      g.srcdoc = answer.html; // the publisher's own content, sandboxed: no script runs in it
      place(el, g);
      el.setAttribute("data-affnet-state", "fallback");
    } else {
      el.style.display = "none"; // the publisher chose to collapse an empty slot
      el.setAttribute("data-affnet-state", "collapsed");
    }
  }

  function load(el) {
    var key = el.getAttribute("data-affnet-slot");
    if (!key || !BASE || !reserve(el)) { return; }
    var st = stateOf(el);
    stopWatching(st);
    st.counted = false;
    var seq = ++st.seq;
    el.setAttribute("data-affnet-state", "loading");
    getJSON(BASE + "/ads/decide?slot=" + encodeURIComponent(key)).then(function (answer) {
      if (seq !== st.seq) { return; } // a reload() came meanwhile
      try { show(el, st, answer); } catch (e) { el.setAttribute("data-affnet-state", "error"); }
    }, function () {
      if (seq === st.seq) { el.setAttribute("data-affnet-state", "unavailable"); } // space stays reserved
    });
  }

  function placeholders() {
    return d.querySelectorAll("[data-affnet-slot]");
  }

  function scan() {
    try {
      var all = placeholders();
      for (var i = 0; i < all.length; i++) {
        if (!all[i].__affnet) { load(all[i]); }
      }
    } catch (e) { /* never break the page */ }
  }

  function reload(el) {
    try {
      if (el && el.nodeType === 1) {
        load(el);
        return;
      }
      var all = placeholders();
      for (var i = 0; i < all.length; i++) { load(all[i]); }
    } catch (e) { /* never break the page */ }
  }

  w.affnet = { __affnet: 1, reload: reload, scan: scan };
  scan();
  if (d.readyState === "loading") {
    d.addEventListener("DOMContentLoaded", scan);
  }
})();
