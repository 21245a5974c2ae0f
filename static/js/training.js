// Training run page: poll progress, fill the bar, draw the loss curve as an SVG polyline.
(function () {
  "use strict";
  var box = document.getElementById("run");
  if (!box) return;
  var url = box.dataset.progressUrl;
  var bar = document.getElementById("progress-bar");
  var text = document.getElementById("progress-text");
  var statusPill = document.getElementById("run-status");
  var outcome = document.getElementById("run-outcome");
  // Epoch records seen while polling: the row keeps only the latest epoch until the run ends.
  var seen = { loss: {}, val_loss: {} };
  var X0 = 50, X1 = 590, Y0 = 200, Y1 = 10;

  function series(history, key) {
    if (history && history[key] && history[key].length) return history[key].slice();
    var byEpoch = seen[key];
    return Object.keys(byEpoch).map(Number).sort(function (a, b) { return a - b; }).map(function (k) { return byEpoch[k]; });
  }

  function draw(train, val) {
    var all = train.concat(val).filter(function (v) { return typeof v === "number" && isFinite(v); });
    var ticks = document.getElementById("loss-ticks");
    ticks.innerHTML = "";
    document.getElementById("loss-nodata").style.display = all.length ? "none" : "";
    if (!all.length) return;
    var n = Math.max(train.length, val.length, 2);
    // Scale to the data (not from 0): loss changes between epochs are often small.
    var max = Math.max.apply(null, all), min = Math.min.apply(null, all);
    var pad = (max - min) * 0.1 || Math.abs(max) * 0.05 || 0.5;
    max += pad; min = Math.max(0, min - pad);
    function pts(values) {
      return values.map(function (v, i) {
        var x = X0 + (X1 - X0) * (n === 1 ? 0 : i / (n - 1));
        var y = Y0 - (Y0 - Y1) * (v - min) / (max - min);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
    }
    document.getElementById("loss-train").setAttribute("points", pts(train));
    document.getElementById("loss-val").setAttribute("points", pts(val));
    var ns = "http://www.w3.org/2000/svg";
    [0, 0.5, 1].forEach(function (f) {
      var y = Y0 - (Y0 - Y1) * f, label = document.createElementNS(ns, "text");
      label.setAttribute("x", 45); label.setAttribute("y", y + 4); label.setAttribute("text-anchor", "end");
      label.textContent = (min + (max - min) * f).toFixed(3); ticks.appendChild(label);
      var line = document.createElementNS(ns, "line");
      line.setAttribute("x1", X0); line.setAttribute("x2", X1); line.setAttribute("y1", y); line.setAttribute("y2", y);
      line.setAttribute("class", "grid"); ticks.appendChild(line);
    });
    for (var i = 0; i < n; i++) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", X0 + (X1 - X0) * (i / (n - 1))); t.setAttribute("y", 214); t.setAttribute("text-anchor", "middle");
      t.textContent = String(i + 1); ticks.appendChild(t);
    }
  }

  function render(data) {
    var p = data.progress || {};
    if (p.epoch) {
      if (typeof p.loss === "number") seen.loss[p.epoch] = p.loss;
      if (typeof p.val_loss === "number") seen.val_loss[p.epoch] = p.val_loss;
    }
    // The server weighs every phase (fits, evaluation, export, gate): the last epoch is not 100 %.
    var pct = typeof data.percent === "number" ? data.percent : 0;
    bar.querySelector(".fill").style.width = pct + "%";
    bar.setAttribute("aria-valuenow", pct);
    var parts = [data.status_label];
    if (data.phase) parts.push(data.phase);
    parts.push(pct + " %");
    if (typeof p.loss === "number") parts.push("loss " + p.loss.toFixed(4));
    if (typeof p.val_loss === "number") parts.push("val loss " + p.val_loss.toFixed(4));
    if (p.eta_seconds && !data.final) parts.push("about " + Math.ceil(p.eta_seconds) + " s left");
    text.textContent = parts.join(" · ");
    statusPill.textContent = data.status_label;
    statusPill.className = "status status-" + data.status;
    draw(series(data.history, "loss"), series(data.history, "val_loss"));
    if (data.final) {
      outcome.innerHTML = "";
      var msg = document.createElement("div");
      if (data.status === "failed") {
        msg.className = "msg msg-error"; msg.textContent = "The run failed: " + (data.error_message || "no reason recorded");
      } else {
        var promoted = data.promotion && data.promotion.promote;
        msg.className = promoted ? "msg msg-success" : "msg msg-warning";
        var head = document.createElement("p");
        head.textContent = "Finished. " + (promoted ? "The candidate passed the gate and is now active. "
                                                    : "The candidate did not pass the gate and was not promoted. ");
        if (data.model_version) {
          var a = document.createElement("a"); a.href = data.model_version.url; a.textContent = "Open " + data.model_version.name;
          head.appendChild(a);
        }
        msg.appendChild(head);
        var reasons = (data.promotion && data.promotion.reasons) || [];
        if (reasons.length) {
          var title = document.createElement("p"); title.innerHTML = "<strong>Gate</strong>"; msg.appendChild(title);
          var list = document.createElement("ul"); list.className = "gate-reasons";
          reasons.forEach(function (r) { var li = document.createElement("li"); li.textContent = r; list.appendChild(li); });
          msg.appendChild(list);
        }
      }
      outcome.appendChild(msg);
    }
    return data.final;
  }

  window.cxrPoll({
    url: url, intervalMs: 2000, errorMs: 8000, immediate: true,
    onData: function (data) { return !render(data); },
  });
})();
