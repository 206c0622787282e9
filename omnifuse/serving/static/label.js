// The labelling page: shows the next queued sample, sends one answer per click or key, skips and undoes.
// Each tab has its own client id, so the server never gives two tabs the same sample.
"use strict";

const client = Math.random().toString(36).slice(2) + Date.now().toString(36);
let current = null;
let classes = [];
let busy = false;

const $ = (id) => document.getElementById(id);

function say(text, error) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify({ client, ...body });
  }
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function progress(data) {
  $("progress").textContent = `${data.answered} of ${data.total} labelled`;
  $("progress").dataset.answered = data.answered;
}

function element(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children || []) node.append(child);
  return node;
}

function show(sample) {
  current = sample;
  const box = $("sample");
  box.replaceChildren();
  $("guess").replaceChildren();
  $("classes").replaceChildren();
  if (!sample) {
    box.append(element("p", { id: "done", textContent: "Every queued sample is labelled (or held by another tab)." }));
    return;
  }
  box.dataset.row = sample.row;
  for (const field of sample.fields) {
    const url = `/label/file/${sample.row}/${encodeURIComponent(field.name)}`;
    let content;
    if (field.kind === "image") content = element("img", { src: url, alt: field.name });
    else if (field.kind === "audio") content = element("audio", { src: url, controls: true });
    else content = element("div", { className: "text", textContent: field.value });
    box.append(element("h3", { textContent: field.name }), content);
  }
  const guess = $("guess");
  guess.append(element("p", { id: "model-guess", textContent: `Model's guess: ${sample.guess}` }));
  for (const [name, p] of Object.entries(sample.probabilities)) {
    const bar = element("span", { className: "bar" });
    bar.style.width = `${Math.round(p * 200)}px`;
    guess.append(element("div", {}, [`${name} `, bar, ` ${(100 * p).toFixed(1)}%`]));
  }
  classes.forEach((name, k) => {
    const button = element("button", { type: "button", className: "class-button", textContent: `${name}` });
    if (k < 9) button.append(" ", element("kbd", { textContent: String(k + 1) }));
    button.dataset.label = name;
    button.addEventListener("click", () => answer(name));
    $("classes").append(button);
  });
}

async function next() {
  const data = await call("GET", `/label/next?client=${encodeURIComponent(client)}`);
  classes = data.classes;
  progress(data);
  show(data.done ? null : data.sample);
}

async function guarded(action) {
  if (busy) return;
  busy = true;
  try {
    await action();
  } catch (error) {
    say(error.message, true);
    try { await next(); } catch (ignored) { /* the message above says enough */ }
  } finally {
    busy = false;
  }
}

function answer(label) {
  if (!current) return;
  return guarded(async () => {
    const row = current.row;
    const data = await call("POST", "/label/answer", { row, label });
    progress(data);
    say(`Saved: row ${row} is ${label}`);
    await next();
  });
}

function skip() {
  if (!current) return;
  return guarded(async () => {
    await call("POST", "/label/skip", { row: current.row });
    say(`Skipped row ${current.row}`);
    await next();
  });
}

function undo() {
  return guarded(async () => {
    const data = await call("POST", "/label/undo", {});
    progress(data);
    say(`Undone: row ${data.sample.row} is unlabelled again`);
    show(data.sample);
  });
}

$("skip-button").addEventListener("click", skip);
$("undo-button").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "TEXTAREA") return;
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const k = Number.parseInt(event.key, 10);
  if (k >= 1 && k <= 9 && k <= classes.length) { event.preventDefault(); answer(classes[k - 1]); }
  else if (event.key === "s") { event.preventDefault(); skip(); }
  else if (event.key === "u") { event.preventDefault(); undo(); }
});

guarded(next);
