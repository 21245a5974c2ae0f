// Study page: viewer (zoom, pan, overlay opacity, window/level as CSS filters), review shortcuts,
// and a status poll that reloads the page when a pending analysis finishes.
(function () {
  "use strict";

  function setupViewer(viewer) {
    var stage = viewer.querySelector("[data-stage]");
    var panel = viewer.closest(".viewer-wrap");
    var overlay = stage.querySelector("[data-overlay]");
    var state = { scale: 1, x: 0, y: 0 };
    var filters = { brightness: 100, contrast: 100 };

    function apply() {
      stage.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
      stage.style.filter = "brightness(" + filters.brightness + "%) contrast(" + filters.contrast + "%)";
    }
    function zoom(factor, cx, cy) {
      var rect = viewer.getBoundingClientRect();
      cx = cx === undefined ? rect.width / 2 : cx; cy = cy === undefined ? rect.height / 2 : cy;
      var next = Math.min(8, Math.max(1, state.scale * factor));
      // keep the point under the cursor fixed while zooming
      state.x = cx - (cx - state.x) * next / state.scale;
      state.y = cy - (cy - state.y) * next / state.scale;
      state.scale = next;
      if (next === 1) { state.x = 0; state.y = 0; }
      apply();
    }
    viewer.zoom = zoom;
    viewer.reset = function () { state = { scale: 1, x: 0, y: 0 }; apply(); };
    viewer.toggleOverlay = function () {
      var box = panel.querySelector("[data-overlay-toggle]");
      if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
    };
    viewer.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = viewer.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - rect.left, e.clientY - rect.top);
    }, { passive: false });
    var drag = null;
    viewer.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX - state.x, y: e.clientY - state.y };
      viewer.setPointerCapture(e.pointerId); viewer.classList.add("dragging");
    });
    viewer.addEventListener("pointermove", function (e) {
      if (!drag || state.scale === 1) return;
      state.x = e.clientX - drag.x; state.y = e.clientY - drag.y; apply();
    });
    ["pointerup", "pointercancel"].forEach(function (t) {
      viewer.addEventListener(t, function () { drag = null; viewer.classList.remove("dragging"); });
    });
    panel.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var what = button.dataset.zoom;
        if (what === "in") zoom(1.25); else if (what === "out") zoom(0.8); else viewer.reset();
      });
    });
    var opacity = panel.querySelector("[data-opacity]");
    var toggle = panel.querySelector("[data-overlay-toggle]");
    if (overlay && opacity) opacity.addEventListener("input", function () { overlay.style.opacity = opacity.value / 100; });
    if (overlay && toggle) toggle.addEventListener("change", function () {
      overlay.hidden = !toggle.checked; if (opacity) opacity.disabled = !toggle.checked;
    });
    var bright = panel.querySelector("[data-brightness]"), contrast = panel.querySelector("[data-contrast]");
    if (bright) bright.addEventListener("input", function () { filters.brightness = bright.value; apply(); });
    if (contrast) contrast.addEventListener("input", function () { filters.contrast = contrast.value; apply(); });
    apply();
  }
  var viewers = Array.prototype.slice.call(document.querySelectorAll("[data-viewer]"));
  viewers.forEach(setupViewer);

  // --- review shortcuts, acting on the first image still waiting for a review ---
  var help = document.getElementById("help-dialog");
  // Only the first image still waiting for a review: re-reviews are deliberate, never a stray key.
  var form = document.querySelector(".review-form.current");
  var nextLink = document.getElementById("next-link");
  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) help.querySelector("[data-help-close]").focus();
  }
  if (help) help.querySelector("[data-help-close]").addEventListener("click", function () { toggleHelp(false); });
  if (form) {
    var select = form.querySelector("[data-label-select]");
    select.addEventListener("change", function () {
      if (select.value) form.querySelector("[data-decision=correct]").checked = true;
    });
  }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "input" || tag === "textarea" || tag === "select") return;
    if (e.key === "Escape") { toggleHelp(false); return; }
    if (e.key === "?") { e.preventDefault(); toggleHelp(); return; }
    var viewer = viewers[0];
    if (viewer && (e.key === "+" || e.key === "=")) { viewer.zoom(1.25); return; }
    if (viewer && e.key === "-") { viewer.zoom(0.8); return; }
    if (viewer && e.key === "0") { viewer.reset(); return; }
    if (viewer && e.key === "h") { viewer.toggleOverlay(); return; }
    if (e.key === "n" && nextLink) { window.location.href = nextLink.href; return; }
    if (!form) return;
    if (e.key === "c") {
      e.preventDefault();
      form.querySelector("[data-decision=confirm]").checked = true;
      form.querySelector("[data-label-select]").value = "";
      form.requestSubmit ? form.requestSubmit() : form.submit();
      return;
    }
    if (/^[1-9]$/.test(e.key)) {
      var options = form.querySelector("[data-label-select]").options;
      var index = parseInt(e.key, 10); // option 0 is the empty choice
      if (index < options.length) {
        e.preventDefault();
        options[index].selected = true;
        form.querySelector("[data-decision=correct]").checked = true;
        form.querySelector("button[type=submit]").focus(); // Enter saves
      }
    }
  });

  // --- reload when a pending analysis finishes ---
  var pending = document.getElementById("pending-note");
  if (pending) {
    window.cxrPoll({
      url: pending.dataset.statusUrl, intervalMs: 3000, errorMs: 10000,
      onData: function (s) {
        if (!s.pending) window.location.reload();
        return s.pending;
      },
    });
  }
})();
