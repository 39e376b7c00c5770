// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A select marked data-autosubmit submits its form when changed (the button stays for
  // keyboard and no-script users).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  // Move focus to an error summary or a result heading so screen readers announce it.
  var target = document.getElementById("error-summary") ||
    document.querySelector("#preview h2, .backtest h2");
  if (target) { target.focus(); }
});
