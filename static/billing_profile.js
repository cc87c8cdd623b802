// The billing details form shows only the ids the chosen country uses, and the VAT regime only to a
// business. The server decides what is needed and ignores ids that do not apply; without JavaScript
// every field stays shown.
(function () {
  "use strict";
  var form = document.querySelector("form[data-billing-profile]");
  if (!form) return;
  var country = form.querySelector("select[data-country]");
  var vatLabel = form.querySelector("[data-vat-label]");

  function kind() {
    var checked = form.querySelector("input[name=kind]:checked");
    return checked ? checked.value : "";
  }

  function update() {
    var code = country.value;
    form.querySelectorAll("[data-for]").forEach(function (block) {
      block.hidden = block.getAttribute("data-for") !== code;
    });
    form.querySelectorAll("[data-kind-only]").forEach(function (block) {
      block.hidden = block.getAttribute("data-kind-only") !== kind();
    });
    if (vatLabel) {
      var key = code === "FR" ? "data-label-fr" : code === "IT" ? "data-label-it" : "data-label-other";
      vatLabel.textContent = vatLabel.getAttribute(key);
    }
  }

  country.addEventListener("change", update);
  form.querySelectorAll("input[name=kind]").forEach(function (radio) {
    radio.addEventListener("change", update);
  });
  update();
})();
