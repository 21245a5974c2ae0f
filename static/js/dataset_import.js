// Dataset import page: poll the import's progress and fill the bar.
(function () {
  "use strict";
  var box = document.getElementById("import");
  if (!box) return;
  var bar = document.getElementById("import-bar");
  var text = document.getElementById("import-text");
  var pill = document.getElementById("import-status");
  var outcome = document.getElementById("import-outcome");

  function render(data) {
    var p = data.progress || {};
    bar.querySelector(".fill").style.width = data.percent + "%";
    bar.setAttribute("aria-valuenow", data.percent);
    var parts = [data.status_label];
    if (p.total) parts.push(p.done + " of " + p.total + " files");
    if (p.total) parts.push((p.added || 0) + " added, " + (p.duplicate || 0) + " already present, " + (p.rejected || 0) + " rejected");
    text.textContent = parts.join(" · ");
    pill.textContent = data.status_label;
    pill.className = "status status-" + data.status;
    if (data.final) {
      outcome.innerHTML = "";
      var msg = document.createElement("p");
      if (data.status === "failed") {
        msg.className = "msg msg-error"; msg.textContent = "The import failed: " + (data.error_message || "no reason recorded");
      } else {
        msg.className = "msg msg-success";
        msg.textContent = "Imported into dataset " + data.dataset + " (" + (p.images_in_dataset || 0) + " images). ";
        var a = document.createElement("a"); a.href = "/models/"; a.textContent = "Start a training run";
        msg.appendChild(a);
      }
      outcome.appendChild(msg);
    }
    return data.final;
  }

  window.cxrPoll({ url: box.dataset.progressUrl, intervalMs: 1500, errorMs: 6000, immediate: true,
                   onData: function (data) { return !render(data); } });
})();
