// The "Explain" switch of the web page: draws the `explanation` of a /predict?explain=true answer in each task's
// card. An image gets its heat map over the picture sent, a text each word's score as a highlight, a recording a
// strip of its moments' scores, a table each column's score. Orange: pushed towards the answer; blue: away from it.
"use strict";

const TOWARDS = [217, 130, 43];
const AWAY = [47, 111, 223];

function scoreColour(value, peak, alpha = 0.75) {
  const [r, g, b] = value >= 0 ? TOWARDS : AWAY;
  const strength = peak > 0 ? Math.min(1, Math.abs(value) / peak) : 0;
  return `rgba(${r}, ${g}, ${b}, ${(alpha * strength).toFixed(3)})`;
}

function peakOf(values) {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

function node(tag, attrs = {}, text = "") {
  const out = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) out.setAttribute(k, v);
  if (text) out.textContent = text;
  return out;
}

// the heat map (rows x cols, the model's resolution) over the picture the user chose, scaled to `size` pixels
function heatmapView(modality, heatmap, size = 192) {
  const rows = heatmap.length;
  const cols = heatmap[0].length;
  const canvas = node("canvas", { class: "heatmap", width: size, height: size });
  const flat = heatmap.flat();
  const peak = peakOf(flat);
  const at = flat.reduce((best, v, i) => (Math.abs(v) > Math.abs(flat[best]) ? i : best), 0);
  canvas.dataset.peak = `${Math.floor(at / cols)},${at % cols}`; // the strongest cell, row,column
  const ctx = canvas.getContext("2d");
  const draw = () => {
    const picture = document.querySelector(`#fields .field[data-name="${modality}"] img.preview`);
    ctx.clearRect(0, 0, size, size);
    if (picture && picture.complete && picture.naturalWidth) {
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(picture, 0, 0, size, size);
    }
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        ctx.fillStyle = scoreColour(heatmap[r][c], peak, 0.7);
        ctx.fillRect((c * size) / cols, (r * size) / rows, size / cols + 0.5, size / rows + 0.5);
      }
    }
    canvas.dataset.drawn = "true";
  };
  draw();
  return canvas;
}

function wordsView(words, scores) {
  const box = node("p", { class: "words" });
  const peak = peakOf(scores);
  words.forEach((word, i) => {
    const span = node("span", { class: "word", title: `${scores[i] >= 0 ? "+" : ""}${scores[i].toFixed(4)}` }, word);
    span.dataset.score = String(scores[i]);
    span.style.background = scoreColour(scores[i], peak);
    box.append(span, " ");
  });
  return box;
}

// one cell per time segment of the recording, under its player
function audioStrip(part, width = 480, height = 28) {
  const canvas = node("canvas", { class: "audio-strip", width, height });
  const scores = part.scores;
  const peak = peakOf(scores);
  const end = part.end_seconds[part.end_seconds.length - 1] || 1;
  const ctx = canvas.getContext("2d");
  scores.forEach((v, i) => {
    const x0 = (part.start_seconds[i] / end) * width;
    const x1 = (part.end_seconds[i] / end) * width;
    ctx.fillStyle = scoreColour(v, peak, 0.9);
    ctx.fillRect(x0, 0, x1 - x0 + 0.5, height);
  });
  canvas.dataset.segments = String(scores.length);
  const at = scores.reduce((best, v, i) => (Math.abs(v) > Math.abs(scores[best]) ? i : best), 0);
  canvas.dataset.peak = String(at);
  const box = node("div", { class: "audio-explained" });
  box.append(canvas, node("p", { class: "muted" },
    `0 – ${end.toFixed(2)} s; strongest moment ${part.start_seconds[at].toFixed(2)}–${part.end_seconds[at].toFixed(2)} s`));
  return box;
}

function columnsView(columns) {
  const table = node("table", { class: "column-scores" });
  const entries = Object.entries(columns).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const peak = peakOf(entries.map(([, v]) => v));
  for (const [name, value] of entries) {
    const row = node("tr");
    row.dataset.column = name;
    row.dataset.score = String(value);
    const cell = node("td", {}, `${value >= 0 ? "+" : ""}${value.toFixed(4)}`);
    cell.style.background = scoreColour(value, peak);
    row.append(node("td", {}, name), cell);
    table.append(row);
  }
  return table;
}

// the explanation of one task's answer: {class, probability, <modality>: {method, ...}}
function explanationView(found) {
  const box = node("div", { class: "explanation" });
  box.append(node("h3", {}, `Why ${found.class}`));
  for (const [modality, part] of Object.entries(found)) {
    if (!part || typeof part !== "object" || !part.method) continue;
    const section = node("div", { class: "explain-part" });
    section.dataset.modality = modality;
    section.dataset.method = part.method;
    section.append(node("p", { class: "muted" }, `${modality} (${part.method.replace(/_/g, " ")})`));
    if (part.heatmap) section.append(heatmapView(modality, part.heatmap));
    else if (part.words) section.append(wordsView(part.words, part.scores));
    else if (part.scores) section.append(audioStrip(part));
    else if (part.columns) section.append(columnsView(part.columns));
    box.append(section);
  }
  return box;
}
