// live.js keeps a page's figures current without reloading it. An element with
// data-live-url is polled every data-live-every milliseconds (default 2000) for JSON of the
// form {"text": {key: text}, "width": {key: percent}, "layout": "...", "done": bool}: each
// element with data-live="key" gets the text, each with data-live-width="key" the width.
// When "layout" differs from the element's data-live-layout (new rows, new links), or
// "done" is true, the page reloads to show them. Failures show in [data-live-status] and
// the polling slows down until the server answers again.
(function () {
	"use strict";
	function watch(root) {
		var url = root.getAttribute("data-live-url");
		var every = parseInt(root.getAttribute("data-live-every"), 10) || 2000;
		var layout = root.getAttribute("data-live-layout");
		var status = document.querySelector("[data-live-status]");
		var delay = every;
		function say(msg) { if (status) { status.textContent = msg; } }
		function apply(data) {
			if ((layout !== null && data.layout !== undefined && data.layout !== layout) || data.done) {
				window.location.reload();
				return false;
			}
			Object.keys(data.text || {}).forEach(function (k) {
				document.querySelectorAll('[data-live="' + k + '"]').forEach(function (el) {
					if (el.textContent !== data.text[k]) { el.textContent = data.text[k]; }
				});
			});
			Object.keys(data.width || {}).forEach(function (k) {
				document.querySelectorAll('[data-live-width="' + k + '"]').forEach(function (el) {
					el.style.width = Math.max(0, Math.min(100, data.width[k])) + "%";
				});
			});
			return true;
		}
		function poll() {
			fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
				.then(function (r) {
					if (r.redirected || r.status === 401) { throw new Error("your session has ended: reload to sign in again"); }
					if (!r.ok) { throw new Error("the server answered " + r.status); }
					return r.json();
				})
				.then(function (data) {
					say("");
					delay = every;
					if (apply(data)) { setTimeout(poll, delay); }
				})
				.catch(function (err) {
					say("Not updating: " + err.message + ".");
					delay = Math.min(delay * 2, 60000);
					setTimeout(poll, delay);
				});
		}
		setTimeout(poll, every);
	}
	document.addEventListener("DOMContentLoaded", function () {
		document.querySelectorAll("[data-live-url]").forEach(watch);
	});
})();
