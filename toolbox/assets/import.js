// import.js uploads the consumer CSV with a progress bar: a large file takes a while to
// send before the import itself starts. Without it the form posts as usual.
(function () {
	"use strict";
	document.addEventListener("DOMContentLoaded", function () {
		var form = document.getElementById("import-form");
		if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
		var bar = form.querySelector("[data-upload-bar]");
		var fill = bar && bar.querySelector("span");
		var status = form.querySelector("[data-upload-status]");
		var button = form.querySelector("button[type=submit]");
		form.addEventListener("submit", function (ev) {
			var input = form.querySelector("input[type=file]");
			if (!input.files || input.files.length === 0) { return; }
			ev.preventDefault();
			var xhr = new XMLHttpRequest();
			xhr.open("POST", form.action);
			xhr.upload.addEventListener("progress", function (e) {
				if (!e.lengthComputable) { return; }
				var pct = Math.round(e.loaded * 100 / e.total);
				fill.style.width = pct + "%";
				status.textContent = "Uploading: " + pct + "%";
			});
			xhr.addEventListener("load", function () {
				// A started import answers with its page (the redirect followed); a refused
				// file with the form and what to fix.
				if (xhr.responseURL && xhr.responseURL.indexOf("/consumers/import/") >= 0 && xhr.status === 200) {
					window.location.href = xhr.responseURL;
					return;
				}
				document.open();
				document.write(xhr.responseText);
				document.close();
			});
			xhr.addEventListener("error", function () {
				status.textContent = "The upload broke off. Check the connection and try again.";
				button.disabled = false;
			});
			bar.hidden = false;
			button.disabled = true;
			status.textContent = "Uploading…";
			xhr.send(new FormData(form));
		});
	});
})();
