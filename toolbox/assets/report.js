// A job's report, live: while the job may still send, the element with data-live-report
// fetches that URL (the same report, its parts alone) every data-every milliseconds and
// puts each part (data-part="NAME") that changed in place of the page's, all in one go, so
// the figures on the page always come from one reading. It stops once the answer carries
// no URL (the job is done), and waits while the tab is hidden. Failures show in
// [data-live-status] and slow the polling down until the server answers again.
(function () {
  "use strict";
  function watch(root) {
    var url = root.getAttribute("data-live-report");
    var status = root.querySelector("[data-live-status]");
    var failures = 0;
    function say(msg) { if (status) { status.textContent = msg; } }
    function every(el) { return Math.max(parseInt(el.getAttribute("data-every"), 10) || 2000, 1000); }
    function apply(fresh) {
      fresh.querySelectorAll("[data-part]").forEach(function (part) {
        var name = part.getAttribute("data-part");
        var old = root.querySelector('[data-part="' + name + '"]');
        if (old && old.innerHTML !== part.innerHTML) {
          old.replaceWith(document.importNode(part, true));
        }
      });
    }
    function later(delay) { setTimeout(tick, delay); }
    function tick() {
      if (document.hidden) {
        later(every(root));
        return;
      }
      fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { throw new Error("your session has ended: reload to sign in again"); }
          if (r.status === 404) { throw new Error("the campaign is gone"); }
          if (!r.ok) { throw new Error("the server answered " + r.status); }
          return r.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-report]");
          if (!fresh) { throw new Error("the server's answer is not a report"); }
          apply(fresh);
          say("");
          failures = 0;
          url = fresh.getAttribute("data-live-report");
          root.setAttribute("data-live-report", url);
          root.setAttribute("data-every", fresh.getAttribute("data-every") || "");
          if (url) { later(every(root)); }
        })
        .catch(function (err) {
          failures++;
          say("Not updating: " + err.message + ".");
          if (!/session|gone/.test(err.message)) { later(Math.min(every(root) * Math.pow(2, failures), 60000)); }
        });
    }
    if (url) { later(every(root)); }
  }
  function start() { document.querySelectorAll("[data-live-report]").forEach(watch); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
