// Worklist: re-render rows that are still queued/running every few seconds until they settle.
(function () {
  "use strict";
  var table = document.getElementById("worklist");
  if (!table) return;
  var url = table.dataset.pollUrl;
  var INTERVAL_MS = 3000;

  function pendingIds() {
    return Array.prototype.map.call(table.querySelectorAll("tr[data-pending]"), function (tr) {
      return tr.dataset.study;
    });
  }

  function poll() {
    var ids = pendingIds();
    if (!ids.length) return; // nothing left to watch
    if (document.hidden) { setTimeout(poll, INTERVAL_MS); return; }
    fetch(url + "?ids=" + ids.join(","), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("poll failed: " + r.status); // session ended: stop quietly
        return r.json();
      })
      .then(function (data) {
        Object.keys(data.rows).forEach(function (id) {
          var old = document.getElementById("study-" + id);
          if (!old) return;
          var holder = document.createElement("tbody");
          holder.innerHTML = data.rows[id].html.trim();
          old.replaceWith(holder.firstElementChild);
        });
        setTimeout(poll, INTERVAL_MS);
      })
      .catch(function () { setTimeout(poll, INTERVAL_MS * 4); });
  }
  setTimeout(poll, INTERVAL_MS);
})();
