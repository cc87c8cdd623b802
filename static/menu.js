// The header's menu button (templates/base.html): on a narrow screen the navigation folds behind it
// and the button opens and closes it. app.css shows the button only where scripts run (or once
// this has marked the header `menu-ready`): without JavaScript the navigation simply stays open.
(function () {
  "use strict";
  document.querySelectorAll("[data-menu]").forEach(function (header) {
    var button = header.querySelector(".menu-button");
    if (!button) return;
    function set(open) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
      header.classList.toggle("menu-open", open);
    }
    header.classList.add("menu-ready");
    button.addEventListener("click", function () {
      set(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("menu-open")) {
        set(false);
        button.focus();
      }
    });
  });
})();
