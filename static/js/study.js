// Study page: the viewer (the radiograph at full resolution windowed from its original values,
// the heatmap registered onto it, the model's input as a second view; zoom, pan, presets,
// invert), review shortcuts acting on the image in view, and a status poll that reloads the
// page when a pending analysis finishes.
(function () {
  "use strict";

  // The film: original values (zlib uint16, inflated in the browser) windowed on a canvas.
  function loadFilm(viewer, data, done) {
    if (!window.DecompressionStream) { done(null); return; }
    fetch(data.film_url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("film " + r.status); return r.body.pipeThrough(new DecompressionStream("deflate")); })
      .then(function (stream) { return new Response(stream).arrayBuffer(); })
      .then(function (buffer) { done(new Uint16Array(buffer)); })
      .catch(function () { done(null); });
  }

  function setupViewer(viewer) {
    var stage = viewer.querySelector("[data-stage]");
    var panel = viewer.closest(".viewer-wrap");
    var state = { scale: 1, x: 0, y: 0 };
    var filmBox = stage.querySelector("[data-film-box]");
    var dataNode = panel.querySelector("script[type='application/json']");
    var film = dataNode ? JSON.parse(dataNode.textContent) : null;
    var values = null, win = null, invert = false, showing = film ? "film" : "input";
    var canvas = filmBox ? filmBox.querySelector("canvas") : null;
    var readout = panel.querySelector("[data-window-readout]");
    var presetSelect = panel.querySelector("[data-window-preset]");
    var invertBox = panel.querySelector("[data-invert]");

    function apply() {
      stage.style.transform = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
    }
    // The film keeps its aspect ratio inside the square viewer, centred.
    function layout() {
      if (!filmBox || !film) return;
      var meta = film.film, box = viewer.getBoundingClientRect();
      var ratio = meta.width / meta.height, w = box.width, h = box.width / ratio;
      if (h > box.height) { h = box.height; w = h * ratio; }
      filmBox.style.width = w + "px"; filmBox.style.height = h + "px";
      filmBox.style.left = (box.width - w) / 2 + "px"; filmBox.style.top = (box.height - h) / 2 + "px";
    }
    // Window/level in the file's own units: value = offset + stored * scale.
    function render() {
      if (!values || !canvas) return;
      var meta = film.film, lut = new Uint8ClampedArray(65536);
      var low = win.center - win.width / 2, span = Math.max(win.width, 1e-6);
      var top = Math.min(65535, Math.ceil((win.center + win.width / 2 - meta.offset) / meta.scale) + 1);
      for (var v = 0; v < 65536; v++) {
        var t = v > top ? 1 : (meta.offset + v * meta.scale - low) / span;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        lut[v] = 255 * (invert ? 1 - t : t);
      }
      var ctx = canvas.getContext("2d"), img = ctx.createImageData(meta.width, meta.height), px = img.data;
      for (var i = 0, j = 0; i < values.length; i++, j += 4) {
        var g = lut[values[i]]; px[j] = px[j + 1] = px[j + 2] = g; px[j + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      if (readout) readout.textContent = "Window " + Math.round(win.width) + " · level " + Math.round(win.center) + (invert ? " · inverted" : "");
    }
    function setPreset(index) {
      var w = film.film.windows[index];
      win = { center: w.center, width: w.width };
      if (presetSelect) presetSelect.value = String(index);
      render();
    }
    if (film && canvas) {
      canvas.width = film.film.width; canvas.height = film.film.height;
      invert = !!film.film.invert; if (invertBox) invertBox.checked = invert;
      layout();
      window.addEventListener("resize", layout);
      loadFilm(viewer, film, function (loaded) {
        if (!loaded || loaded.length !== film.film.width * film.film.height) { show("input"); return; }
        values = loaded;
        viewer.dataset.filmLoaded = "1";
        setPreset(0);
      });
      if (presetSelect) presetSelect.addEventListener("change", function () { setPreset(parseInt(presetSelect.value, 10)); });
      if (invertBox) invertBox.addEventListener("change", function () { invert = invertBox.checked; render(); });
    }
    viewer.toggleInvert = film ? function () { if (invertBox) { invertBox.checked = !invertBox.checked; invertBox.dispatchEvent(new Event("change")); } } : null;

    function show(which) {
      showing = which;
      stage.querySelectorAll("[data-layer]").forEach(function (layer) { layer.hidden = layer.dataset.layer !== which; });
      panel.querySelectorAll("[data-show]").forEach(function (b) {
        var on = b.dataset.show === which; b.classList.toggle("active", on); b.setAttribute("aria-pressed", on ? "true" : "false");
      });
    }
    panel.querySelectorAll("[data-show]").forEach(function (b) { b.addEventListener("click", function () { show(b.dataset.show); }); });

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
    viewer.reset = function () { state = { scale: 1, x: 0, y: 0 }; apply(); if (film && values) setPreset(0); };
    viewer.toggleOverlay = function () {
      var box = panel.querySelector("[data-overlay-toggle]");
      if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
    };
    viewer.addEventListener("wheel", function (e) {
      e.preventDefault();
      var rect = viewer.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - rect.left, e.clientY - rect.top);
    }, { passive: false });
    viewer.addEventListener("contextmenu", function (e) { e.preventDefault(); });
    var drag = null;
    viewer.addEventListener("pointerdown", function (e) {
      var windowing = showing === "film" && values && (e.button === 2 || e.shiftKey);
      drag = windowing ? { mode: "window", x: e.clientX, y: e.clientY, center: win.center, width: win.width }
                       : { mode: "pan", x: e.clientX - state.x, y: e.clientY - state.y };
      viewer.setPointerCapture(e.pointerId); viewer.classList.add("dragging");
      viewer.focus({ preventScroll: true });
    });
    var pendingFrame = 0;
    viewer.addEventListener("pointermove", function (e) {
      if (!drag) return;
      if (drag.mode === "window") {
        // One pixel of drag = 1/300 of the current width: fine control, full range in a few drags.
        var unit = Math.max(drag.width, 1) / 300;
        win = { width: Math.max(1, drag.width + (e.clientX - drag.x) * unit), center: drag.center - (e.clientY - drag.y) * unit };
        if (!pendingFrame) pendingFrame = requestAnimationFrame(function () { pendingFrame = 0; render(); });
        return;
      }
      if (state.scale === 1) return;
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
    var overlays = Array.prototype.slice.call(stage.querySelectorAll("[data-overlay], [data-input-overlay]"));
    var opacity = panel.querySelector("[data-opacity]");
    var toggle = panel.querySelector("[data-overlay-toggle]");
    if (opacity) opacity.addEventListener("input", function () { overlays.forEach(function (o) { o.style.opacity = opacity.value / 100; }); });
    if (toggle) toggle.addEventListener("change", function () {
      overlays.forEach(function (o) { o.hidden = !toggle.checked; }); if (opacity) opacity.disabled = !toggle.checked;
    });
    apply();
  }
  var viewers = Array.prototype.slice.call(document.querySelectorAll("[data-viewer]"));
  viewers.forEach(setupViewer);

  // --- shortcuts: they act only on the image the radiologist is looking at ---
  var help = document.getElementById("help-dialog");
  var nextLink = document.getElementById("next-link");
  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) help.querySelector("[data-help-close]").focus();
  }
  if (help) help.querySelector("[data-help-close]").addEventListener("click", function () { toggleHelp(false); });

  function visibleShare(node) {
    var r = node.getBoundingClientRect();
    var h = Math.min(r.bottom, window.innerHeight) - Math.max(r.top, 0);
    return r.height > 0 ? Math.max(0, h) / Math.min(r.height, window.innerHeight) : 0;
  }
  // The panel in use: the one holding the focus, else the current (first unreviewed) panel
  // if it is on screen. Nothing acts on an image the radiologist cannot see.
  function activePanel() {
    var focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".image-panel") : null;
    if (focused) return focused;
    var current = document.querySelector(".image-panel.current");
    return current && visibleShare(current) >= 0.5 ? current : null;
  }
  function focusPanel(panel) {
    if (!panel) return;
    panel.scrollIntoView({ block: "start" });
    var target = panel.querySelector("[data-viewer]") || panel;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: true });
  }
  // After a review the page reloads; the next image waiting for review is brought into view
  // and focused, so the next key acts on the image on screen.
  var current = document.querySelector(".image-panel.current");
  if (current && !window.location.hash) focusPanel(current);

  document.querySelectorAll("[data-review-form]").forEach(function (form) {
    var select = form.querySelector("[data-label-select]");
    select.addEventListener("change", function () {
      if (select.value) form.querySelector("[data-decision=correct]").checked = true;
    });
  });

  function typing(target) {
    var tag = (target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select" || target.isContentEditable) return true;
    // Sliders, checkboxes and buttons keep the shortcuts working after they are used.
    return tag === "input" && ["range", "checkbox", "radio", "button", "submit"].indexOf(target.type) < 0;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === "Escape") { toggleHelp(false); return; }
    if (e.key === "?") { e.preventDefault(); toggleHelp(); return; }
    if (e.key === "n" && nextLink) { window.location.href = nextLink.href; return; }
    var panel = activePanel();
    if (!panel) return;
    var viewer = panel.querySelector("[data-viewer]");
    if (viewer && viewer.zoom) {
      if (e.key === "+" || e.key === "=") { e.preventDefault(); viewer.zoom(1.25); return; }
      if (e.key === "-") { e.preventDefault(); viewer.zoom(0.8); return; }
      if (e.key === "0") { e.preventDefault(); viewer.reset(); return; }
      if (e.key === "h") { viewer.toggleOverlay(); return; }
      if (e.key === "i" && viewer.toggleInvert) { viewer.toggleInvert(); return; }
    }
    // Review keys: only on the panel's own open review form (the first unreviewed image;
    // re-reviews are deliberate, through the form).
    var form = panel.querySelector(".review-form.current");
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
