// The one polling loop of the pages (worklist rows, study status, training progress).
//
// cxrPoll({url, intervalMs, errorMs, immediate, onData}) fetches url (a string, or a
// function returning one; an empty string stops the loop) as same-origin JSON every
// intervalMs while the tab is visible, and waits errorMs after a failure (a non-2xx
// answer, or a redirect to the login page when the session ended). onData(data) returns
// true to keep polling.
(function () {
  "use strict";
  window.cxrPoll = function (options) {
    var interval = options.intervalMs || 3000;
    var onError = options.errorMs || interval * 4;

    function tick() {
      var url = typeof options.url === "function" ? options.url() : options.url;
      if (!url) return;
      if (document.hidden) { setTimeout(tick, interval); return; }
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error("poll failed: " + r.status);
          return r.json();
        })
        .then(function (data) { if (options.onData(data)) setTimeout(tick, interval); })
        .catch(function () { setTimeout(tick, onError); });
    }
    if (options.immediate) tick(); else setTimeout(tick, interval);
  };
})();
