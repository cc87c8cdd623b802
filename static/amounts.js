// The amount as the server understood it, beside each amount field: "= 12,50 €", or why it would be
// refused. The server's own parser answers (GET /amount/preview), in the same locale it will save
// with, so this echo cannot disagree with what is stored. It only shows; the form posts as typed.
//
// <input name="amount" data-amount data-currency="EUR">            fixed currency
// <input name="amount" data-amount data-currency-from="currency">  the form's field of that name
// <input ... data-amount data-amount-unless="goal_0_model=revshare"> no echo when that field has that value
(function () {
  "use strict";

  function currencyOf(input) {
    var from = input.getAttribute("data-currency-from");
    if (from && input.form && input.form.elements[from]) {
      return input.form.elements[from].value;
    }
    return input.getAttribute("data-currency") || "";
  }

  function skipped(input) {
    var rule = input.getAttribute("data-amount-unless");
    if (!rule || !input.form) return false;
    var parts = rule.split("=");
    var other = input.form.elements[parts[0]];
    return !!other && other.value === parts[1];
  }

  function echoOf(input) {
    var id = input.getAttribute("data-amount-echo-id");
    if (id) return document.getElementById(id);
    var echo = document.createElement("output");
    echo.className = "amount-echo muted";
    echo.setAttribute("aria-live", "polite");
    echo.id = "amount-echo-" + Math.random().toString(36).slice(2);
    input.setAttribute("data-amount-echo-id", echo.id);
    input.setAttribute("aria-describedby", echo.id);
    input.insertAdjacentElement("afterend", echo);
    return echo;
  }

  function show(input) {
    var echo = echoOf(input);
    var text = input.value.trim();
    var currency = currencyOf(input);
    if (!text || !currency || skipped(input)) {
      echo.textContent = "";
      echo.className = "amount-echo muted";
      return;
    }
    var asked = text + "|" + currency;
    input.setAttribute("data-amount-asked", asked);
    var url = "/amount/preview?text=" + encodeURIComponent(text) + "&currency=" + encodeURIComponent(currency);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (input.getAttribute("data-amount-asked") !== asked) return; // typed on meanwhile
        if (body.error) {
          echo.textContent = body.error.message;
          echo.className = "amount-echo error";
        } else {
          echo.textContent = "= " + body.display;
          echo.className = "amount-echo ok";
        }
      })
      .catch(function () { echo.textContent = ""; });
  }

  function watch(input) {
    var timer = null;
    function later() {
      clearTimeout(timer);
      timer = setTimeout(function () { show(input); }, 250);
    }
    input.addEventListener("input", later);
    if (input.form) input.form.addEventListener("change", later);
    show(input);
  }

  document.querySelectorAll("input[data-amount]").forEach(watch);
})();
