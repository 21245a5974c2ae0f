// Upload: drag and drop, a header probe per file, one XHR per file with a progress bar.
// A DICOM is filed under the patient and study named in its own header, shown on its row;
// the typed fields serve files without those details (PNG, JPEG) and must not contradict
// a header (the server refuses that as a conflict). Every batch starts with clean fields.
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
  var batchDone = false;
  var FIELD_NAMES = ["mrn", "patient_name", "birth_date", "sex", "accession_number", "view_position", "clinical_notes"];
  var IDENTITY = [["mrn", "MRN"], ["accession_number", "accession"]];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  function typed(name) { return form.elements[name] ? form.elements[name].value.trim() : ""; }

  // A new drop after a finished batch starts a new batch: no fields, no rows of the last one.
  function startBatchIfDone() {
    if (!batchDone) return;
    batchDone = false;
    files = [];
    list.textContent = "";
    FIELD_NAMES.forEach(function (name) { if (form.elements[name]) form.elements[name].value = ""; });
    summary.textContent = "";
  }

  function addFiles(fileList) {
    startBatchIfDone();
    Array.prototype.forEach.call(fileList, function (file) {
      var item = el("li", "file");
      item.appendChild(el("span", "fname", file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KiB)"));
      var who = el("span", "who small muted", "Reading the header…");
      item.appendChild(who);
      var bar = el("progress"); bar.max = 100; bar.value = 0;
      bar.setAttribute("aria-label", "Upload progress of " + file.name);
      item.appendChild(bar);
      var result = el("span", "result small", "Ready");
      item.appendChild(result);
      list.appendChild(item);
      var entry = { file: file, item: item, who: who, bar: bar, result: result, done: false, header: null, confirmed: false };
      files.push(entry);
      probe(entry);
    });
  }

  // Headers only (no pixels are decoded on the server).
  function probe(entry) {
    var data = new FormData();
    data.append("file", entry.file);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.probeUrl);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.onload = function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
      if (!body.ok) { entry.who.textContent = body.error_message || "The header could not be read."; return; }
      entry.header = body.identified ? body.header : null;
      if (body.identified) {
        var h = body.header;
        entry.who.textContent = "From its header: " + (h.patient_name || "(no name)") + " · MRN " + h.mrn +
          " · accession " + h.accession_number + (h.view_position ? " · " + h.view_position : "");
      } else {
        entry.who.textContent = body.format.toUpperCase() + ": no patient or study in the file; the fields below apply.";
      }
      showConflicts();
      explain();
    };
    xhr.onerror = function () { entry.who.textContent = ""; };
    xhr.send(data);
  }

  // A typed MRN or accession that contradicts a file's own header, shown before uploading.
  function conflictOf(entry) {
    if (!entry.header) return "";
    var parts = [];
    IDENTITY.forEach(function (pair) {
      var value = typed(pair[0]);
      if (value && entry.header[pair[0]] && value !== entry.header[pair[0]]) {
        parts.push("typed " + pair[1] + " " + value + " ≠ the file's " + entry.header[pair[0]]);
      }
    });
    return parts.length ? "Conflict: " + parts.join("; ") + ". Clear the typed value or remove this file." : "";
  }

  function showConflicts() {
    files.forEach(function (entry) {
      if (entry.done) return;
      var text = conflictOf(entry);
      entry.item.classList.toggle("conflict", !!text);
      if (text) { entry.result.textContent = text; entry.result.setAttribute("role", "alert"); }
      else if (entry.result.textContent.indexOf("Conflict:") === 0) { entry.result.textContent = "Ready"; entry.result.removeAttribute("role"); }
    });
  }

  function explain() {
    var patients = {};
    var needFields = false;
    files.forEach(function (entry) {
      if (entry.header) patients[entry.header.mrn + "/" + entry.header.accession_number] = true;
      else needFields = true;
    });
    var count = Object.keys(patients).length;
    note.textContent = (count > 1 ? "These DICOM files belong to " + count + " different patients or studies; each is filed under its own header. " :
      count === 1 ? "DICOM files are filed under the patient and study in their header. " : "") +
      (needFields ? "Enter the patient and study for the files without them." : "");
  }

  function confirmBox(entry, message) {
    var box = el("div", "confirm-patient msg msg-warning");
    box.appendChild(el("span", "", message + " "));
    var button = el("button", "btn small", "This is the registered patient: upload");
    button.type = "button";
    button.addEventListener("click", function () {
      entry.confirmed = true;
      box.remove();
      uploadOne(entry).then(finishIfAllDone);
    });
    box.appendChild(button);
    entry.item.appendChild(box);
    button.focus();
  }

  function uploadOne(entry) {
    return new Promise(function (resolve) {
      var data = new FormData();
      FIELD_NAMES.forEach(function (name) { if (form.elements[name]) data.append(name, form.elements[name].value); });
      if (entry.confirmed) data.append("patient_confirmed", "on");
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
          entry.result.removeAttribute("role");
          entry.result.textContent = body.duplicate ? "Already uploaded — " : "Uploaded, analysis queued — ";
          var link = el("a", "", "open the study"); link.href = body.study_url; entry.result.appendChild(link);
          resolve(true);
          return;
        }
        entry.item.className = "file error";
        entry.result.setAttribute("role", "alert");
        entry.result.textContent = body && body.error_message ? body.error_message
          : (xhr.status === 403 ? "Your role does not allow uploads." : "The server could not accept this file (HTTP " + xhr.status + ").");
        if (body && body.error_code === "patient_unconfirmed" && !entry.confirmed) {
          entry.result.textContent = "";
          confirmBox(entry, body.error_message);
        }
        resolve(false);
      };
      xhr.onerror = function () {
        entry.item.className = "file error";
        entry.result.textContent = "Network error: the file was not uploaded. Try again.";
        resolve(false);
      };
      xhr.send(data);
    });
  }

  // When every file of the batch is in, the batch is over: the fields are cleared so the
  // next drop cannot join this patient's study by accident.
  function finishIfAllDone() {
    var pending = files.filter(function (f) { return !f.done; });
    if (pending.length) return;
    batchDone = true;
    FIELD_NAMES.forEach(function (name) { if (form.elements[name]) form.elements[name].value = ""; });
    summary.textContent = files.length + " uploaded. The fields are cleared: the next files start a new batch.";
    summary.className = "small";
    note.textContent = "";
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
  IDENTITY.forEach(function (pair) { if (form.elements[pair[0]]) form.elements[pair[0]].addEventListener("input", showConflicts); });
  FIELD_NAMES.forEach(function (name) {
    if (form.elements[name]) form.elements[name].addEventListener("focus", startBatchIfDone);
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var todo = files.filter(function (f) { return !f.done; });
    if (!todo.length) { summary.textContent = "Choose at least one file."; return; }
    submit.disabled = true;
    summary.textContent = "Uploading " + todo.length + " file(s)…";
    // One at a time: keeps the order, and a PNG's study is created before the next PNG joins it.
    todo.reduce(function (chain, entry) {
      return chain.then(function (okSoFar) { return uploadOne(entry).then(function (ok) { return okSoFar + (ok ? 1 : 0); }); });
    }, Promise.resolve(0)).then(function (ok) {
      submit.disabled = false;
      var failed = todo.length - ok;
      if (!failed) { finishIfAllDone(); return; }
      summary.textContent = ok + " uploaded, " + failed + " refused (see the reasons above; fix them and upload again).";
      summary.className = "small field-error";
    });
  });
})();
