// The page of `maskrcnn serve`: send an image to POST predict, draw the detections on a canvas.
//
// Masks arrive as COCO compressed RLE (column-major run lengths, as predictions.json has them) and are
// decoded here, once per image; the score slider only redraws. Small pictures are drawn enlarged by a
// whole factor (canvas.dataset.scale) so that labels stay legible. Colours come with each prediction
// (the server's, by score rank, as the PNG overlays have them), so a detection keeps its colour while the
// slider hides others. `document.body.dataset
// .state` is "idle", "busy", "done" or "error" (a browser test waits on it).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const MASK_ALPHA = 0.45;
const MIN_SIDE = 480; // pictures smaller than this (longer side) are drawn enlarged by a whole factor

let current = null; // {picture, width, height, predictions, categories, masks: [Uint8Array|null]}

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").className = state === "error" ? "error" : "";
  document.body.dataset.state = state;
}

// The colours the library's overlays give detection i, as the server sends them with each prediction
// (maskrcnn/overlay_colors.py): `color` for mask and box, `label_color` (darker) behind the label and
// `text_color` (white) for its text. One rule on both sides, so the page and the PNG overlays agree.
function colours(i) {
  const p = current.predictions[i];
  return { fill: p.color, label: p.label_color, text: p.text_color };
}
const css = (rgb) => `rgb(${rgb.join(",")})`;

// COCO compressed RLE string -> run lengths: 6-bit characters (offset 48), 5 data bits each, the
// 0x20 bit says "more characters follow", the 0x10 bit of the last one is the sign; from the third
// count on, each is stored as the difference to the count two places before.
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true, c = 0;
    while (more) {
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// RLE {size: [H, W], counts} -> the mask cropped to its ones: {x0, y0, w, h, data} with data a
// Uint8Array (h * w, row-major) of 0/1, or null for an empty mask. Cropping keeps memory at the
// objects' size, not detections x picture size (100 masks of a 12-megapixel photograph would be 1.2 GB).
function decodeMask(rle) {
  const [H, W] = rle.size;
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let i = 1, pos = counts[0] || 0; i < counts.length; pos += counts[i] + (counts[i + 1] || 0), i += 2) {
    const n = Math.min(counts[i], H * W - pos); // a run of ones over [pos, pos + n), column-major
    if (n <= 0) continue;
    const first = pos, last = pos + n - 1;
    const xf = Math.floor(first / H), xl = Math.floor(last / H);
    x0 = Math.min(x0, xf);
    x1 = Math.max(x1, xl);
    y0 = Math.min(y0, xl > xf ? 0 : first - xf * H); // a run over a column boundary spans all rows
    y1 = Math.max(y1, xl > xf ? H - 1 : last - xl * H);
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const data = new Uint8Array(w * h);
  for (let i = 1, pos = counts[0] || 0; i < counts.length; pos += counts[i] + (counts[i + 1] || 0), i += 2) {
    const end = Math.min(pos + counts[i], H * W);
    for (let q = pos; q < end; q++) {
      const x = Math.floor(q / H);
      data[(q - x * H - y0) * w + (x - x0)] = 1;
    }
  }
  return { x0, y0, w, h, data };
}

// 1 where a mask pixel has a 4-neighbour outside the mask (the crop's border is the mask's border or
// the picture's): the outline, drawn darker so that touching instances of one colour stay apart.
function maskOutline(m) {
  const { w, h, data } = m;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const q = y * w + x;
      if (!data[q]) continue;
      out[q] = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !data[q - 1] || !data[q + 1] ||
               !data[q - w] || !data[q + w] ? 1 : 0;
    }
  }
  return out;
}

// The model's limbs as 0-based keypoint index pairs, from GET health (`keypoints.skeleton`: the
// training set's skeleton, COCO's for COCO's 17 keypoints, else none), as the PNG overlays draw them;
// none until health answers, and for a model without a skeleton: points only.
let skeleton = [];

// keypoints [x1, y1, v1, ...] of one detection (canvas scale k): limbs, then points, where v > 0.
function drawKeypoints(kps, k, css, line) {
  const pts = [];
  for (let j = 0; j + 2 < kps.length; j += 3) pts.push([kps[j] * k, kps[j + 1] * k, kps[j + 2]]);
  ctx.lineWidth = line;
  ctx.strokeStyle = css;
  for (const [a, b] of skeleton) {
    if (a < pts.length && b < pts.length && pts[a][2] > 0 && pts[b][2] > 0) {
      ctx.beginPath();
      ctx.moveTo(pts[a][0], pts[a][1]);
      ctx.lineTo(pts[b][0], pts[b][1]);
      ctx.stroke();
    }
  }
  for (const [x, y, v] of pts) {
    if (v <= 0) continue;
    ctx.beginPath();
    ctx.arc(x, y, 1.5 * line, 0, 2 * Math.PI);
    ctx.fillStyle = css;
    ctx.fill();
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.lineWidth = line;
    ctx.strokeStyle = css;
  }
}

function threshold() {
  return parseFloat($("score").value);
}

function render() {
  if (!current) return;
  const { width: W, height: H, scale: k, predictions, categories } = current;
  const t = threshold();
  ctx.imageSmoothingEnabled = false; // small pictures are enlarged by whole pixels, not blurred
  if (current.picture) {
    ctx.drawImage(current.picture, 0, 0, W * k, H * k);
  } else { // the browser cannot decode this format: detections on grey
    ctx.fillStyle = "#808080";
    ctx.fillRect(0, 0, W * k, H * k);
  }
  const shown = predictions.map((p, i) => [p, i]).filter(([p]) => p.score >= t);
  if (shown.some(([, i]) => current.masks[i])) {
    const img = ctx.getImageData(0, 0, W * k, H * k);
    const px = img.data;
    const rowStride = W * k * 4;
    for (const [, i] of shown) {
      const m = current.masks[i];
      if (!m || m.x0 + m.w > W || m.y0 + m.h > H) continue;
      const edge = current.outlines[i];
      const [r, g, b] = colours(i).fill;
      const [er, eg, eb] = colours(i).label; // the outline: the darker colour, as the overlays draw it
      for (let q = 0; q < m.data.length; q++) {
        if (!m.data[q]) continue;
        const cy = Math.floor(q / m.w);
        const y = m.y0 + cy, x = m.x0 + q - cy * m.w;
        const a = edge[q] ? 1 : MASK_ALPHA; // outline: opaque
        let cr = r, cg = g, cb = b; // this pixel's colour, chosen once for its whole k x k block
        if (edge[q]) { cr = er; cg = eg; cb = eb; }
        for (let dy = 0; dy < k; dy++) { // the k x k block of this image pixel
          let o = (y * k + dy) * rowStride + x * k * 4;
          for (let dx = 0; dx < k; dx++, o += 4) {
            px[o] += (cr - px[o]) * a;
            px[o + 1] += (cg - px[o + 1]) * a;
            px[o + 2] += (cb - px[o + 2]) * a;
          }
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }
  // line width and font in canvas pixels, growing with the picture as the library's overlays do
  const line = Math.max(2, Math.round(Math.max(W, H) * k / 400));
  const font = Math.max(12, Math.round(Math.max(W, H) * k / 45));
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const [p, i] of shown) {
    const [x, y, w, h] = p.bbox.map((v) => v * k);
    const c = colours(i);
    ctx.lineWidth = line;
    ctx.strokeStyle = css(c.fill);
    ctx.strokeRect(x, y, w, h);
    if (p.keypoints) drawKeypoints(p.keypoints, k, css(c.fill), line);
    const name = p.category_name ?? categories[String(p.category_id)] ?? p.category_id;
    const label = `${name} ${p.score.toFixed(2)}`;
    const tw = ctx.measureText(label).width + 2 * line;
    const ty = y - font - 2 * line >= 0 ? y - font - 2 * line : y; // above the box, or inside at the top
    // inside the canvas: a box at the right edge moves its label left (as the overlays do), not off it
    const tx = Math.min(Math.max(0, x - line / 2), Math.max(0, canvas.width - tw));
    ctx.fillStyle = css(c.label);
    ctx.fillRect(tx, ty, tw, font + 2 * line);
    ctx.fillStyle = css(c.text);
    ctx.fillText(label, tx + line, ty + line);
  }
  let n = 0;
  for (const row of $("rows").children) {
    const below = parseFloat(row.dataset.score) < t;
    row.classList.toggle("below", below);
    n += below ? 0 : 1;
  }
  setStatus(`${current.file}: ${W}×${H}, ${n} of ${predictions.length} detections shown ` +
            `(${current.seconds.toFixed(2)} s)`, "done");
}

function fillTable() {
  const rows = $("rows");
  rows.textContent = "";
  current.predictions.forEach((p, i) => {
    const tr = document.createElement("tr");
    tr.dataset.score = p.score;
    const name = p.category_name ?? current.categories[String(p.category_id)] ?? String(p.category_id);
    const cells = [String(i + 1), name, p.score.toFixed(3), ...p.bbox.map((v) => v.toFixed(1))];
    cells.forEach((text, c) => {
      const td = document.createElement("td");
      if (c === 1) {
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = css(colours(i).fill);
        td.appendChild(sw);
      }
      td.appendChild(document.createTextNode(text));
      if (c !== 1) td.className = "num";
      tr.appendChild(td);
    });
    rows.appendChild(tr);
  });
}

// Back to the page's first look: no picture, no table (the slider then has nothing to redraw).
function clearView() {
  current = null;
  $("rows").textContent = "";
  canvas.width = 1;
  canvas.height = 1;
  delete canvas.dataset.scale;
  canvas.classList.add("empty");
}

// Each choice of file is numbered: an answer (or error) for an earlier choice that arrives after a later
// one was made is dropped, else a slow large image chosen first would replace the quick second one's
// picture, table and status while the file input names the second.
let latestChoice = 0;

async function showFile(file) {
  if (!file) return;
  const choice = ++latestChoice;
  setStatus(`${file.name}: detecting…`, "busy");
  showNotes([]); // the previous file's notes are not this one's
  const form = new FormData();
  form.append("image", file, file.name);
  let answer;
  try {
    const res = await fetch("predict", { method: "POST", body: form });
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    if (!res.ok) {
      const why = body && body.detail ? body.detail : text || res.statusText;
      throw new Error(`${res.status}: ${typeof why === "string" ? why : JSON.stringify(why)}`);
    }
    answer = body;
  } catch (e) {
    if (choice !== latestChoice) return; // a later file was chosen meanwhile: its answer is the one shown
    clearView(); // the previous file's picture and table beside this file's error would read as its own
    setStatus(`${file.name}: ${e.message}`, "error");
    return;
  }
  let picture = null;
  try {
    picture = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    picture = null; // e.g. TIFF: the server read it, the browser cannot
  }
  if (choice !== latestChoice) return; // checked after the last await: nothing older is drawn after it
  current = {
    picture,
    file: answer.file_name,
    width: answer.width,
    height: answer.height,
    scale: Math.max(1, Math.floor(MIN_SIDE / Math.max(answer.width, answer.height))),
    seconds: answer.seconds || 0,
    predictions: answer.predictions,
    categories: answer.categories,
    masks: answer.predictions.map((p) => (p.segmentation ? decodeMask(p.segmentation) : null)),
  };
  current.outlines = current.masks.map((m) => (m ? maskOutline(m) : null));
  canvas.width = answer.width * current.scale;
  canvas.height = answer.height * current.scale;
  canvas.dataset.scale = current.scale;
  canvas.classList.remove("empty");
  showNotes(answer.notes || []);
  fillTable();
  render();
}

// The answer's notes (how the upload was read: frames left out, a picture read as dark, NaN pixels,
// an ONNX model's own score floor), one line each under the status line.
function showNotes(notes) {
  const list = $("notes");
  list.replaceChildren(...notes.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
}

$("file").addEventListener("change", (e) => showFile(e.target.files[0]));
$("score").addEventListener("input", () => {
  $("score-value").textContent = threshold().toFixed(2);
  render();
});
const drop = $("drop");
for (const ev of ["dragenter", "dragover"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const ev of ["dragleave", "drop"]) {
  drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", (e) => showFile(e.dataTransfer.files[0]));
// A file dropped anywhere else must not make the browser navigate away from the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

fetch("health").then((r) => r.json()).then((h) => {
  skeleton = (h.keypoints && h.keypoints.skeleton) || [];
  render(); // a picture predicted before this answer gets its limbs
  const names = Object.values(h.categories);
  $("model").textContent = `${h.weights || "model"} · ${names.length} class${names.length === 1 ? "" : "es"} ` +
    `(${names.slice(0, 8).join(", ")}${names.length > 8 ? ", …" : ""}) · ${h.device}`;
}).catch(() => { $("model").textContent = "model information unavailable"; });
