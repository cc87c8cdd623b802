// Report range forms (templates/partials/report_range.html): preset buttons that fill the From and To
// dates and submit, and a button choosing the browser's time zone. "Today" is today in the zone the
// form has selected, not the browser's: a report in Asia/Tokyo starts its day before one in Europe/Paris.
// The buttons start hidden and are shown here, so without JavaScript the typed-in form is all there is.
(function () {
  "use strict";

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // A calendar date as {y, m (1-12), d} in the given IANA zone (the browser's own if it is unknown).
  function todayIn(timeZone) {
    var now = new Date();
    var parts;
    try {
      parts = new Intl.DateTimeFormat("en-US", {
        timeZone: timeZone, year: "numeric", month: "numeric", day: "numeric",
      }).formatToParts(now);
    } catch (e) {
      return { y: now.getFullYear(), m: now.getMonth() + 1, d: now.getDate() };
    }
    var out = {};
    parts.forEach(function (p) {
      if (p.type === "year") out.y = parseInt(p.value, 10);
      if (p.type === "month") out.m = parseInt(p.value, 10);
      if (p.type === "day") out.d = parseInt(p.value, 10);
    });
    return out;
  }

  // Civil-date arithmetic in UTC, where no day is 23 or 25 hours long. Date.UTC rolls over months
  // and years (day 0 is the last day of the month before).
  function iso(y, m, d) {
    var date = new Date(Date.UTC(y, m - 1, d));
    return date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate());
  }

  function presetRange(name, t) {
    switch (name) {
      case "today": return [iso(t.y, t.m, t.d), iso(t.y, t.m, t.d)];
      case "last-7-days": return [iso(t.y, t.m, t.d - 6), iso(t.y, t.m, t.d)];
      case "last-30-days": return [iso(t.y, t.m, t.d - 29), iso(t.y, t.m, t.d)];
      case "this-month": return [iso(t.y, t.m, 1), iso(t.y, t.m, t.d)];
      case "last-month": return [iso(t.y, t.m - 1, 1), iso(t.y, t.m, 0)];
      default: return null;
    }
  }

  function browserZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      return "";
    }
  }

  function submit(form) {
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  }

  function setUp(form) {
    if (form.hasAttribute("data-range-ready")) return;
    form.setAttribute("data-range-ready", "");
    var from = form.querySelector("input[name=from]");
    var to = form.querySelector("input[name=to]");
    var tz = form.querySelector("select[name=tz]");
    var presets = form.querySelector("[data-range-presets]");
    if (!from || !to || !tz || !presets) return;

    // The browser refuses a To date before From (and says so) instead of the server.
    function bound() { to.min = from.value; }
    from.addEventListener("change", bound);
    bound();

    presets.querySelectorAll("[data-preset]").forEach(function (button) {
      button.addEventListener("click", function () {
        var range = presetRange(button.getAttribute("data-preset"), todayIn(tz.value));
        if (!range) return;
        from.value = range[0];
        to.value = range[1];
        bound();
        submit(form);
      });
    });

    var zoneButton = presets.querySelector("[data-browser-tz]");
    var zone = browserZone();
    if (zoneButton) {
      if (!zone) {
        zoneButton.hidden = true;
      } else {
        // The button's words come from the page, in the reader's language; the zone is added here.
        zoneButton.textContent = zoneButton.textContent.trim() + " (" + zone + ")";
        zoneButton.addEventListener("click", function () {
          var known = Array.prototype.some.call(tz.options, function (o) { return o.value === zone; });
          if (!known) tz.add(new Option(zone, zone));
          tz.value = zone;
          submit(form);
        });
      }
    }
    presets.hidden = false;
  }

  function setUpAll() {
    document.querySelectorAll("form[data-range-form]").forEach(setUp);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUpAll);
  else setUpAll();
})();
