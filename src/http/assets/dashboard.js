// Live refresh of the overview: every few seconds, fetch the overview's fragment and put it
// in place, without reloading the page. The page works without this script (it then reloads
// itself through a <noscript> meta refresh); a failed fetch dims the numbers until the next
// one succeeds.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var every = parseInt(live.getAttribute("data-refresh-ms"), 10) || 5000;
  var src = live.getAttribute("data-src");
  function tick() {
    fetch(src, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.removeAttribute("data-stale");
      })
      .catch(function () { live.setAttribute("data-stale", "true"); })
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
