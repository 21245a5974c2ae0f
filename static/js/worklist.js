// Worklist: re-render rows that are still queued/running every few seconds until they settle.
(function () {
  "use strict";
  var table = document.getElementById("worklist");
  if (!table) return;
  var url = table.dataset.pollUrl;

  function pendingIds() {
    return Array.prototype.map.call(table.querySelectorAll("tr[data-pending]"), function (tr) {
      return tr.dataset.study;
    });
  }

  window.cxrPoll({
    intervalMs: 3000,
    url: function () {
      var ids = pendingIds();
      return ids.length ? url + "?ids=" + ids.join(",") : ""; // nothing left to watch: stop
    },
    onData: function (data) {
      Object.keys(data.rows).forEach(function (id) {
        var old = document.getElementById("study-" + id);
        if (!old) return;
        var holder = document.createElement("tbody");
        holder.innerHTML = data.rows[id].html.trim();
        old.replaceWith(holder.firstElementChild);
      });
      return true;
    },
  });
})();
