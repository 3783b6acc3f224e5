// Live progress: every element with a data-progress URL (a dashboard row) polls that
// progress.json every 2 seconds and updates, inside itself, the figures marked
// data-field="NAME" and the bar segments marked data-seg="NAME". It stops once the job is
// done (or gone), and waits while the tab is hidden. (A job's report refreshes as a whole:
// report.js.)
(function () {
  "use strict";
  var every = 2000;
  var number = new Intl.NumberFormat("en-US");

  function apply(el, p) {
    var values = {
      sent: p.sent, received: p.received, retrying: p.retrying, failed: p.failed,
      remaining: p.remaining, percent: p.percent,
      // The dashboard's rows show rejected and given up together; the report shows both.
      rejected: el.querySelector('[data-field="failed"]') ? p.rejected : p.rejected + p.failed
    };
    el.querySelectorAll("[data-field]").forEach(function (f) {
      var name = f.getAttribute("data-field");
      if (name === "waiting") {
        f.textContent = p.waiting || "";
      } else if (name === "state") {
        f.textContent = p.state;
        f.className = "tag state-" + p.state;
      } else if (name in values) {
        f.textContent = number.format(values[name]);
      }
    });
    el.querySelectorAll("[data-seg]").forEach(function (s) {
      var w = p.bar[s.getAttribute("data-seg")];
      if (typeof w === "number") {
        s.style.width = w + "%";
      }
    });
    el.querySelectorAll('[role="progressbar"]').forEach(function (b) {
      b.setAttribute("aria-valuenow", String(p.percent));
    });
  }

  function watch(el) {
    var url = el.getAttribute("data-progress");
    if (!url) {
      return;
    }
    function tick() {
      if (document.hidden) {
        setTimeout(tick, every);
        return;
      }
      fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status === 404 || r.status === 401 || r.redirected) {
            return null; // gone, or signed out (sent to the login page): nothing more to show
          }
          if (!r.ok) {
            throw new Error("HTTP " + r.status);
          }
          return r.json();
        })
        .then(function (p) {
          if (!p) {
            return;
          }
          apply(el, p);
          if (p.done) {
            return;
          }
          setTimeout(tick, every);
        })
        .catch(function () {
          setTimeout(tick, every * 5); // the server is busy or restarting: back off
        });
    }
    setTimeout(tick, every);
  }

  function start() {
    document.querySelectorAll("[data-progress]").forEach(watch);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
