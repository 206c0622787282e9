// The omnifuse web page: builds one input per modality of the served model (from /metadata), posts them to
// /predict as form data, and draws each task's probabilities and the modality weights as bars.
"use strict";

const MAX_BARS = 10; // classes shown per task, most probable first
const recordings = {}; // modality name -> recorded WAV blob

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

// a table's columns, one typed input each: numbers as number inputs, categories as the values seen in training
function buildColumns(name, info) {
  const field = document.getElementById("columns-field").content.firstElementChild.cloneNode(true);
  field.dataset.name = name;
  field.querySelector("legend").textContent = name;
  const box = field.querySelector(".columns");
  for (const column of info.schema) {
    const label = el("label", { class: "column" });
    label.append(el("span", {}, column.name));
    let input;
    if (column.kind === "category") {
      input = el("select");
      input.append(el("option", { value: "" }, "(missing)"));
      for (const value of column.vocabulary || []) input.append(el("option", { value }, value));
    } else {
      input = el("input", { type: "number", step: "any", placeholder: "(missing)" });
    }
    input.name = column.name;
    input.id = `column-${column.name}`;
    input.dataset.column = column.name;
    label.append(input);
    box.append(label);
  }
  return field;
}

function buildField(name, info) {
  if (info.kind === "numbers" && info.schema && info.schema.length) return buildColumns(name, info);
  const template = document.getElementById(`${info.kind}-field`);
  if (!template) return null; // a kind this page cannot offer an input for
  const field = template.content.firstElementChild.cloneNode(true);
  field.dataset.name = name;
  field.querySelector("legend").textContent = name;
  field.querySelector(".expects").textContent = info.expects || "";
  const input = field.querySelector("input, textarea");
  input.name = name;
  input.id = `field-${name}`;
  if (info.kind === "image" || info.kind === "audio") {
    const preview = field.querySelector(".preview");
    input.addEventListener("change", () => {
      delete recordings[name];
      const file = input.files[0];
      preview.hidden = !file;
      if (file) preview.src = URL.createObjectURL(file);
    });
    // dropping a file anywhere on the field chooses it
    field.addEventListener("dragover", (e) => { e.preventDefault(); field.classList.add("dragging"); });
    field.addEventListener("dragleave", () => field.classList.remove("dragging"));
    field.addEventListener("drop", (e) => {
      e.preventDefault();
      field.classList.remove("dragging");
      if (e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        input.dispatchEvent(new Event("change"));
      }
    });
  }
  if (info.kind === "audio") setUpRecorder(field, name, input);
  return field;
}

// Recording: the browser records in its own format (WebM/Ogg); it is decoded here and sent as 16-bit PCM WAV,
// the format the server reads.
function setUpRecorder(field, name, input) {
  const button = field.querySelector(".record");
  const status = field.querySelector(".record-status");
  const preview = field.querySelector(".preview");
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    button.disabled = true;
    status.textContent = "recording needs a browser with microphone access (https or localhost)";
    return;
  }
  let recorder = null;
  button.addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") { recorder.stop(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      status.textContent = `no microphone: ${err.message}`;
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      button.textContent = "Record";
      button.classList.remove("recording");
      try {
        const encoded = await new Blob(chunks).arrayBuffer();
        const audio = await new AudioContext().decodeAudioData(encoded);
        recordings[name] = wavBlob(audio);
        input.value = "";
        preview.src = URL.createObjectURL(recordings[name]);
        preview.hidden = false;
        status.textContent = `recorded ${audio.duration.toFixed(1)} s`;
      } catch (err) {
        status.textContent = `could not read the recording: ${err.message}`;
      }
    };
    recorder.start();
    button.textContent = "Stop";
    button.classList.add("recording");
    status.textContent = "recording…";
  });
}

function wavBlob(audio) {
  const rate = audio.sampleRate;
  const n = audio.length;
  const mono = new Float32Array(n);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const data = audio.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / audio.numberOfChannels;
  }
  const buffer = new ArrayBuffer(44 + 2 * n);
  const view = new DataView(buffer);
  const ascii = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  ascii(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); ascii(8, "WAVE");
  ascii(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); ascii(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

function bars(entries, className) {
  const list = el("div", { class: className });
  entries.forEach(([label, value], i) => {
    const row = el("div", { class: i === 0 && className === "probabilities" ? "bar-row top" : "bar-row" });
    row.dataset.label = label;
    row.dataset.value = String(value);
    row.append(el("span", { class: "label", title: label }, label));
    const bar = el("div", { class: "bar" });
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * value).toFixed(1)}%`;
    bar.append(fill);
    row.append(bar, el("span", { class: "value" }, `${(100 * value).toFixed(1)}%`));
    list.append(row);
  });
  return list;
}

function showResult(answer) {
  const result = document.getElementById("result");
  result.replaceChildren();
  for (const [task, res] of Object.entries(answer.tasks)) {
    const card = el("div", { class: "card task" });
    card.dataset.task = task;
    card.append(el("h2", {}, task));
    if (res.answerable === false) { // none of the inputs this task answers from was given
      card.classList.add("unanswerable");
      card.dataset.answerable = "false";
      card.append(el("p", { class: "predicted" }, "not answered"), el("p", { class: "reason" }, res.reason));
      result.append(card);
      continue;
    }
    card.dataset.answerable = "true";
    const sorted = Object.entries(res.probabilities).sort((a, b) => b[1] - a[1]);
    card.append(el("p", { class: "predicted" }, res.class));
    card.append(bars(sorted.slice(0, MAX_BARS), "probabilities"));
    if (answer.explanation && answer.explanation[task]) card.append(explanationView(answer.explanation[task]));
    result.append(card);
  }
  if (answer.modality_weights) {
    const card = el("div", { class: "card modality-weights" });
    card.append(el("h2", {}, "How much each input counted"));
    card.append(bars(Object.entries(answer.modality_weights), "weights"));
    result.append(card);
  }
  result.dataset.state = "done";
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const form = new FormData();
  for (const field of document.querySelectorAll("#fields .field")) {
    const name = field.dataset.name;
    if (field.dataset.kind === "columns") { // each column its own form field, empty = missing
      for (const input of field.querySelectorAll("[data-column]")) {
        if (input.value.trim()) form.append(input.name, input.value.trim());
      }
      continue;
    }
    const input = field.querySelector("input, textarea");
    if (recordings[name]) form.append(name, recordings[name], "recording.wav");
    else if (input.type === "file") { if (input.files[0]) form.append(name, input.files[0]); }
    else if (input.value.trim()) form.append(name, input.value);
  }
  if ([...form.keys()].length === 0) {
    showError("Give at least one input.");
    return;
  }
  const button = document.getElementById("predict-button");
  const result = document.getElementById("result");
  button.disabled = true;
  result.dataset.state = "waiting";
  try {
    const explain = document.getElementById("explain").checked;
    const response = await fetch(explain ? "/predict?explain=true" : "/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      result.dataset.state = "error";
      showError(body.field ? `${body.field}: ${body.detail}` : body.detail);
      return;
    }
    showResult(body);
  } catch (err) {
    result.dataset.state = "error";
    showError(`The server did not answer: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function init() {
  const fields = document.getElementById("fields");
  try {
    const meta = await (await fetch("/metadata")).json();
    document.getElementById("run-name").textContent = meta.run;
    document.title = `omnifuse: ${meta.run}`;
    fields.replaceChildren();
    for (const [name, info] of Object.entries(meta.modalities)) {
      const field = buildField(name, info);
      if (field) fields.append(field);
    }
    document.getElementById("predict-button").disabled = false;
  } catch (err) {
    showError(`Could not read the model's inputs from /metadata: ${err.message}`);
  }
  document.getElementById("predict-form").addEventListener("submit", submit);
}

init();
