// The payment page's small helpers: copy buttons, and following a charge until the webhook settles it.
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) { return; }
    var label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = "Copiado!";
        setTimeout(function () { button.textContent = label; }, 2500);
      }, function () { field.select(); });
    });
  });

  var charge = document.getElementById("cobranca");
  if (!charge || charge.getAttribute("data-status") !== "pending") { return; }
  var url = charge.getAttribute("data-status-url");
  var every = (parseInt(charge.getAttribute("data-poll"), 10) || 3) * 1000;
  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (answer && answer.status !== "pending") { window.location.reload(); return; }
        setTimeout(poll, every);
      }, function () { setTimeout(poll, every * 2); });
  }
  setTimeout(poll, every);
})();
