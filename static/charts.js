// Report charts: draws every <canvas data-chart='{"type": ..., "labels": [...], "series": [...]}'> with
// Chart.js (served from /static/vendor/, never a CDN). templates/partials/chart.html writes the markup.
// The figure starts hidden and is shown here only once Chart.js is there to draw it, so without
// JavaScript (or if Chart.js failed to load) the page shows the table with the same figures and no
// empty box.
(function () {
  "use strict";

  // Okabe & Ito's palette, distinguishable with the common colour-vision deficiencies. Lines also
  // differ by point shape and dash, so a series never depends on colour alone.
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
  var POINT_STYLES = ["circle", "rect", "triangle", "rectRot", "star", "crossRot", "cross", "dash"];
  var DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3]];
  var AXES = { count: true, money: true };

  // Numbers as the page's language writes them (<html lang>), like the tables beside the chart;
  // every word a chart shows (series, day labels, its accessible name) comes from the page.
  var lang = document.documentElement.lang || undefined;
  var count = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  var money = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  function reducedMotion() {
    return !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function axisOf(series) {
    return AXES[series.axis] ? series.axis : "count";
  }

  function parseSpec(canvas) {
    try {
      var spec = JSON.parse(canvas.getAttribute("data-chart"));
      if (!spec || !Array.isArray(spec.labels) || !Array.isArray(spec.series)) throw new Error("labels and series are required");
      return spec;
    } catch (e) {
      if (window.console) console.warn("data-chart is not a chart spec", canvas, e);
      return null;
    }
  }

  function dataset(series, i, type) {
    var colour = PALETTE[i % PALETTE.length];
    var own = series.type === "line" || series.type === "bar" ? series.type : type;
    var set = {
      type: own,
      label: String(series.label || ""),
      data: series.data,
      yAxisID: axisOf(series),
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: own === "line" ? 2 : 0,
      pointStyle: POINT_STYLES[i % POINT_STYLES.length],
      pointRadius: own === "line" ? 3 : 0,
      pointHoverRadius: 5,
      tension: 0,
      fill: false,
    };
    if (own === "line") set.borderDash = DASHES[i % DASHES.length];
    return set;
  }

  function scale(axis, position, stacked, onlyAxis) {
    var isMoney = axis === "money";
    return {
      type: "linear",
      position: position,
      stacked: stacked,
      beginAtZero: true,
      // The second axis draws no grid of its own: two grids over one plot read as noise.
      grid: { drawOnChartArea: position === "left" || onlyAxis },
      ticks: isMoney
        ? { callback: function (value) { return money.format(value); } }
        : { precision: 0, callback: function (value) { return count.format(value); } },
    };
  }

  function config(spec) {
    var type = spec.type === "bar" ? "bar" : "line";
    var stacked = !!spec.stacked;
    var used = {};
    spec.series.forEach(function (s) { used[axisOf(s)] = true; });
    var both = used.count && used.money;
    var scales = { x: { stacked: stacked, grid: { display: false } } };
    if (used.count || !used.money) scales.count = scale("count", "left", stacked, !both);
    if (used.money) scales.money = scale("money", both ? "right" : "left", stacked, !both);

    return {
      type: type,
      data: { labels: spec.labels, datasets: spec.series.map(function (s, i) { return dataset(s, i, type); }) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion() ? false : { duration: 400 },
        interaction: { mode: "index", intersect: false },
        scales: scales,
        plugins: {
          legend: { display: spec.series.length > 1, labels: { usePointStyle: true } },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var fmt = ctx.dataset.yAxisID === "money" ? money : count;
                var value = ctx.parsed.y;
                return ctx.dataset.label + ": " + (value === null || value === undefined ? "–" : fmt.format(value));
              },
            },
          },
        },
      },
    };
  }

  function draw(canvas) {
    if (canvas.hasAttribute("data-chart-drawn")) return;
    var spec = parseSpec(canvas);
    if (!spec) return;
    if (!canvas.getAttribute("role")) canvas.setAttribute("role", "img");
    if (!canvas.getAttribute("aria-label")) {
      canvas.setAttribute("aria-label", spec.series.map(function (s) { return s.label; }).join(", "));
    }
    // Chart.js sizes the canvas to its parent: give the parent the height the template asked for.
    var box = canvas.parentNode;
    var height = parseInt(canvas.getAttribute("height"), 10) || 260;
    box.style.height = height + "px";
    var figure = canvas.closest("figure.chart");
    if (figure) figure.hidden = false;
    canvas.setAttribute("data-chart-drawn", "");
    new window.Chart(canvas, config(spec));
  }

  function drawAll() {
    if (typeof window.Chart !== "function") return; // Chart.js did not load: the table stands alone.
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = cssVar("--fg", "#1d2330");
    window.Chart.defaults.borderColor = cssVar("--line", "#e2e5ea");
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  // Deferred scripts run after parsing, in order, so Chart.js (loaded first) is ready here.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawAll);
  else drawAll();
})();
