// The campaign editor: tags inserted at the cursor, selection rows added and removed in
// place, and the preview and the count (with the cost) refreshed as the issuer types. The
// form works without it: rows then come and go with the "Add a row" and "Remove" buttons.
(function () {
	"use strict";
	var form = document.getElementById("campaign-form");
	if (!form) {
		return;
	}
	var lastField = null;
	form.addEventListener("focusin", function (e) {
		if (e.target.hasAttribute && e.target.hasAttribute("data-tags")) {
			lastField = e.target;
		}
	});
	form.addEventListener("click", function (e) {
		var tag = e.target.closest(".tag-insert");
		if (tag) {
			e.preventDefault();
			var f = lastField || form.querySelector("[data-tags]");
			var text = tag.getAttribute("data-tag");
			var start = f.selectionStart, end = f.selectionEnd;
			f.value = f.value.slice(0, start) + text + f.value.slice(end);
			f.focus();
			f.selectionStart = f.selectionEnd = start + text.length;
			refresh();
			return;
		}
		if (e.target.closest("[data-add-row]")) {
			e.preventDefault();
			addRow();
			return;
		}
		var remove = e.target.closest(".remove-row");
		if (remove) {
			e.preventDefault();
			var rows = form.querySelectorAll(".sel-row");
			if (rows.length > 1) {
				remove.closest(".sel-row").remove();
			} else {
				remove.closest(".sel-row").querySelectorAll("input").forEach(function (i) { i.value = ""; });
			}
			refresh();
		}
	});

	function addRow() {
		var rows = form.querySelectorAll(".sel-row");
		var last = rows[rows.length - 1];
		var next = 0;
		form.querySelectorAll("[name^=sel_field_]").forEach(function (i) {
			next = Math.max(next, parseInt(i.name.slice(10), 10) + 1);
		});
		var row = last.cloneNode(true);
		row.querySelectorAll("[name]").forEach(function (i) {
			i.name = i.name.replace(/_\d+$/, "_" + next);
			i.removeAttribute("aria-invalid");
			if (i.tagName === "SELECT") {
				i.value = "=";
			} else {
				i.value = "";
			}
		});
		row.querySelectorAll(".field-error").forEach(function (s) { s.remove(); });
		last.after(row);
		showRemoveButtons();
		row.querySelector("input").focus();
	}

	function showRemoveButtons() {
		form.querySelectorAll(".remove-row").forEach(function (b) {
			b.hidden = false;
			b.type = "button";
		});
	}
	showRemoveButtons();

	var timer = null;
	var seq = 0;
	function refresh() {
		clearTimeout(timer);
		timer = setTimeout(send, 350);
	}
	form.addEventListener("input", refresh);
	form.addEventListener("change", refresh);

	function send() {
		var mine = ++seq;
		var body = new URLSearchParams(new FormData(form));
		fetch(form.getAttribute("data-preview-url"), { method: "POST", body: body, credentials: "same-origin" })
			.then(function (r) { return r.ok ? r.text() : null; })
			.then(function (html) {
				if (html !== null && mine === seq) {
					document.getElementById("preview").innerHTML = html;
				}
			})
			.catch(function () {});
		fetch(form.getAttribute("data-count-url"), { method: "POST", body: body, credentials: "same-origin" })
			.then(function (r) { return r.json(); })
			.then(function (ans) {
				if (mine !== seq) {
					return;
				}
				document.getElementById("cost").innerHTML = ans.cost_html;
				form.querySelectorAll(".live-error").forEach(function (s) { s.remove(); });
				form.querySelectorAll("[data-live-invalid]").forEach(function (i) {
					i.removeAttribute("aria-invalid");
					i.removeAttribute("data-live-invalid");
				});
				if (ans.error && ans.error.field) {
					// An error of the selection as a whole goes under the rows, not only
					// in the side panel.
					var input = form.querySelector("[name='" + ans.error.field + "']");
					var span = document.createElement("span");
					span.className = "field-error live-error";
					span.setAttribute("data-testid", "live-error");
					span.textContent = ans.error.reason;
					if (input) {
						input.setAttribute("aria-invalid", "true");
						input.setAttribute("data-live-invalid", "");
						input.after(span);
					} else if (ans.error.field === "selection" || ans.error.field.indexOf("sel_") === 0) {
						document.getElementById("selection-error").appendChild(span);
					}
				}
			})
			.catch(function () {});
	}
})();
