// Upload: drag and drop, header probe to prefill the form, one XHR per file with a progress bar.
// Without JavaScript the same form posts all files at once to the page itself.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var input = document.getElementById("id_files");
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("file-list");
  var summary = document.getElementById("upload-summary");
  var note = document.getElementById("probe-note");
  var submit = document.getElementById("upload-submit");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var files = [];
  var FIELD_NAMES = ["mrn", "patient_name", "birth_date", "sex", "accession_number", "view_position", "clinical_notes"];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  function addFiles(fileList) {
    var firstBatch = files.length === 0;
    Array.prototype.forEach.call(fileList, function (file) {
      var item = el("li", "file");
      item.appendChild(el("span", "fname", file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KiB)"));
      var bar = el("progress"); bar.max = 100; bar.value = 0;
      bar.setAttribute("aria-label", "Upload progress of " + file.name);
      item.appendChild(bar);
      var result = el("span", "result small", "Ready");
      item.appendChild(result);
      list.appendChild(item);
      files.push({ file: file, item: item, bar: bar, result: result, done: false });
    });
    if (firstBatch && files.length) probe(files[0].file);
  }

  // Prefill empty fields from the first file's DICOM header (the server reads headers only).
  function probe(file) {
    var data = new FormData();
    data.append("file", file);
    note.textContent = "Reading the file header…";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.probeUrl);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.onload = function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: treat as no metadata */ }
      if (!body.ok) { note.textContent = body.error_message ? "First file: " + body.error_message : ""; return; }
      var filled = [];
      Object.keys(body.prefill || {}).forEach(function (name) {
        var field = form.elements[name];
        var value = body.prefill[name];
        if (field && value && !field.value) { field.value = value; filled.push(field.labels && field.labels[0] ? field.labels[0].textContent.replace("*", "").trim() : name); }
      });
      note.textContent = filled.length ? "Filled from the DICOM header: " + filled.join(", ") + ". Check before uploading."
                                       : body.format + " file: no patient or study details in the file; please enter them.";
    };
    xhr.onerror = function () { note.textContent = ""; };
    xhr.send(data);
  }

  function uploadOne(entry) {
    return new Promise(function (resolve) {
      var data = new FormData();
      FIELD_NAMES.forEach(function (name) { if (form.elements[name]) data.append(name, form.elements[name].value); });
      data.append("file", entry.file);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.fileUrl);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) entry.bar.value = Math.round(100 * e.loaded / e.total); };
      entry.result.textContent = "Uploading…";
      xhr.onload = function () {
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        entry.bar.value = 100;
        if (body && body.ok) {
          entry.done = true;
          entry.item.className = "file ok";
          entry.result.textContent = body.duplicate ? "Already uploaded — " : "Uploaded, analysis queued — ";
          var link = el("a", "", "open the study"); link.href = body.study_url; entry.result.appendChild(link);
          resolve(true);
        } else {
          entry.item.className = "file error";
          entry.result.setAttribute("role", "alert");
          entry.result.textContent = body && body.error_message ? body.error_message
            : (xhr.status === 403 ? "Your role does not allow uploads." : "The server could not accept this file (HTTP " + xhr.status + ").");
          resolve(false);
        }
      };
      xhr.onerror = function () {
        entry.item.className = "file error";
        entry.result.textContent = "Network error: the file was not uploaded. Try again.";
        resolve(false);
      };
      xhr.send(data);
    });
  }

  input.addEventListener("change", function () { addFiles(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { if (e.dataTransfer && e.dataTransfer.files) addFiles(e.dataTransfer.files); });
  zone.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var todo = files.filter(function (f) { return !f.done; });
    if (!todo.length) { summary.textContent = "Choose at least one file."; return; }
    submit.disabled = true;
    summary.textContent = "Uploading " + todo.length + " file(s)…";
    // One at a time: keeps the order and lets the first file create the study the others join.
    todo.reduce(function (chain, entry) {
      return chain.then(function (okSoFar) { return uploadOne(entry).then(function (ok) { return okSoFar + (ok ? 1 : 0); }); });
    }, Promise.resolve(0)).then(function (ok) {
      submit.disabled = false;
      var failed = todo.length - ok;
      summary.textContent = ok + " uploaded" + (failed ? ", " + failed + " refused (see the reasons above)" : "") + ".";
      summary.className = failed ? "small field-error" : "small";
      summary.id = "upload-summary";
    });
  });
})();
