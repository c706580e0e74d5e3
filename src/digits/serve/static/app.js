// The drawing page: strokes on a canvas (pointer events: mouse, touch and pen alike), sent to
// /api/predict and /api/read after every stroke; a dropped or chosen photo goes the same way.
"use strict";

(() => {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  const undoButton = $("undo");
  const clearButton = $("clear");
  const upload = $("upload");
  const dropzone = $("dropzone");
  const prediction = $("prediction");
  const status = $("status");
  const preview = $("preview");
  const bars = $("probabilities");
  const readBox = $("read");

  // Strokes are kept in canvas-relative units (0–1), so a resize or undo redraws them exactly.
  let strokes = [];
  let current = null;
  let photo = null; // an uploaded image drawn under the strokes
  let sequence = 0; // answers to older requests are dropped when a newer one was sent

  // A brush about a twelfth of the canvas gives strokes as thick, relative to a digit drawn
  // over most of the canvas, as MNIST's pen strokes are relative to its 20-pixel digits.
  const BRUSH = 0.075;

  function buildBars() {
    for (let digit = 0; digit < 10; digit++) {
      const item = document.createElement("li");
      item.innerHTML =
        `<span class="label">${digit}</span>` +
        '<span class="track"><span class="fill"></span></span><span class="pct">–</span>';
      bars.appendChild(item);
    }
  }

  function resize() {
    const scale = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const side = Math.max(1, Math.round(rect.width * scale));
    if (canvas.width !== side || canvas.height !== side) {
      canvas.width = side;
      canvas.height = side;
      redraw();
    }
  }

  function redraw() {
    const size = canvas.width;
    context.fillStyle = "#fff";
    context.fillRect(0, 0, size, size);
    if (photo) {
      const fit = Math.min(size / photo.width, size / photo.height);
      const w = photo.width * fit;
      const h = photo.height * fit;
      context.drawImage(photo, (size - w) / 2, (size - h) / 2, w, h);
    }
    for (const stroke of strokes) drawStroke(stroke, 0);
  }

  function drawStroke(points, from) {
    const size = canvas.width;
    context.strokeStyle = "#000";
    context.fillStyle = "#000";
    context.lineWidth = BRUSH * size;
    context.lineCap = "round";
    context.lineJoin = "round";
    if (points.length === 1) {
      context.beginPath();
      context.arc(points[0][0] * size, points[0][1] * size, (BRUSH * size) / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.beginPath();
    const start = Math.max(0, from - 1);
    context.moveTo(points[start][0] * size, points[start][1] * size);
    for (let i = start + 1; i < points.length; i++) {
      context.lineTo(points[i][0] * size, points[i][1] * size);
    }
    context.stroke();
  }

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height];
  }

  function isEmpty() {
    return strokes.length === 0 && photo === null;
  }

  function updateButtons() {
    undoButton.disabled = strokes.length === 0 && photo === null;
    clearButton.disabled = isEmpty();
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    current = { id: event.pointerId, points: [point(event)] };
    drawStroke(current.points, 0);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== current.id) return;
    event.preventDefault();
    const from = current.points.length;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) current.points.push(point(e));
    drawStroke(current.points, from);
  });

  function endStroke(event) {
    if (!current || event.pointerId !== current.id) return;
    strokes.push(current.points);
    current = null;
    updateButtons();
    recognise();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  // touch-action: none keeps the page still in most browsers; cancelling the touch events too
  // covers those that honour it only partly, and stops the browser from reading a quick stroke
  // as a fling (which would swallow the next tap on a button).
  for (const name of ["touchstart", "touchmove"]) {
    canvas.addEventListener(name, (event) => event.preventDefault(), { passive: false });
  }

  function undo() {
    if (strokes.length) strokes.pop();
    else photo = null;
    redraw();
    updateButtons();
    if (isEmpty()) showIdle();
    else recognise();
  }

  function clear() {
    strokes = [];
    photo = null;
    sequence++;
    redraw();
    updateButtons();
    showIdle();
  }

  undoButton.addEventListener("click", undo);
  clearButton.addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && !undoButton.disabled) {
      event.preventDefault();
      undo();
    }
  });

  // --- results ---------------------------------------------------------------------------

  function setBars(probabilities) {
    bars.hidden = false;
    const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    bars.querySelectorAll("li").forEach((item, digit) => {
      const p = probabilities ? probabilities[digit] : 0;
      item.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
      item.querySelector(".pct").textContent = probabilities ? `${Math.round(p * 100)}%` : "–";
      item.classList.toggle("top", digit === top);
      item.setAttribute("aria-label", `digit ${digit}: ${probabilities ? Math.round(p * 100) : 0}%`);
    });
  }

  function setPreview(url) {
    // The whole figure goes, caption included, when there is nothing the model saw.
    if (url) preview.src = url;
    else preview.removeAttribute("src");
    preview.hidden = !url;
    preview.parentElement.hidden = !url;
  }

  function showIdle() {
    prediction.textContent = "–";
    prediction.dataset.state = "idle";
    status.textContent = "Draw a digit to start.";
    setPreview(null);
    readBox.hidden = true;
    setBars(null);
  }

  function showError(message) {
    prediction.textContent = "!";
    prediction.dataset.state = "error";
    status.textContent = message;
    setPreview(null);
    readBox.hidden = true;
    setBars(null);
  }

  function showPrediction(result) {
    const percent = Math.round(result.confidence * 100);
    if (result.digit !== null) {
      prediction.textContent = String(result.digit);
      prediction.dataset.state = "digit";
      status.textContent = `${result.digit}, ${percent}% sure.`;
    } else if (result.answer === "no_digit") {
      prediction.textContent = "–";
      prediction.dataset.state = "empty";
      status.textContent = "No digit found: " + result.reason.replace(/^no digit:?\s*/, "");
    } else if (result.answer === "not_digit") {
      prediction.textContent = "✗";
      prediction.dataset.state = "notdigit";
      status.textContent =
        "Not a digit: that looks like a letter, a symbol or a drawing. Write a single digit 0–9.";
    } else {
      const best = result.probabilities.indexOf(Math.max(...result.probabilities));
      prediction.textContent = "?";
      prediction.dataset.state = "unsure";
      status.textContent = `Not sure: maybe ${best} (${percent}%). Try drawing it larger or clearer.`;
    }
    // Bars would rank digits for something that holds none.
    const digitless = result.answer === "no_digit" || result.answer === "not_digit";
    setBars(digitless ? null : result.probabilities);
    setPreview(result.preview);
    readBox.hidden = true;
  }

  // Several digits found by /api/read: the number is the answer, each digit shown with its own
  // 28×28 and confidence; the single-digit bars would describe a squeezed-together image.
  function showSeveral(result) {
    const list = $("read-digits");
    list.replaceChildren();
    for (const found of result.digits) {
      const item = document.createElement("li");
      const image = document.createElement("img");
      image.src = found.preview || "";
      image.alt = `digit ${found.digit ?? "unsure"} as the model saw it`;
      const label = document.createElement("span");
      label.className = found.digit === null ? "d unsure" : "d";
      label.textContent = found.digit === null ? "?" : String(found.digit);
      const sure = document.createElement("span");
      sure.textContent = `${Math.round(found.confidence * 100)}%`;
      item.append(label, image, sure);
      list.appendChild(item);
    }
    $("read-text").textContent = result.text;
    prediction.textContent = result.text;
    prediction.dataset.state = "several";
    const unsure = result.digits.filter((d) => d.digit === null).length;
    status.textContent =
      `${result.digits.length} digits, read left to right` +
      (unsure ? `; not sure of ${unsure} (shown as ?).` : ".");
    setPreview(null);
    setBars(null);
    bars.hidden = true;
    readBox.hidden = false;
  }

  async function post(path, blob, name) {
    const form = new FormData();
    form.append("file", blob, name);
    const response = await fetch(path, { method: "POST", body: form });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error((body && body.detail) || `the server answered ${response.status}`);
    }
    return body;
  }

  async function send(blob, name) {
    const mine = ++sequence;
    prediction.dataset.state = "busy";
    try {
      const [predicted, read] = await Promise.all([
        post("/api/predict", blob, name),
        post("/api/read", blob, name).catch(() => null),
      ]);
      if (mine !== sequence) return;
      if (read && read.digits.length >= 2) showSeveral(read);
      else showPrediction(predicted);
    } catch (error) {
      if (mine === sequence) showError(`Could not read that: ${error.message}`);
    }
  }

  // The drawing is sent at this many pixels a side rather than at the screen's resolution (up to
  // ~1300 on a phone): still eight times MNIST's 20-pixel digit box, a few kilobytes to upload,
  // and several times less work for the server's preparation of the image.
  const SEND_SIDE = 160;
  const small = document.createElement("canvas");
  small.width = SEND_SIDE;
  small.height = SEND_SIDE;
  const smallContext = small.getContext("2d");

  function recognise() {
    if (isEmpty()) return;
    smallContext.imageSmoothingEnabled = true;
    smallContext.imageSmoothingQuality = "high";
    smallContext.drawImage(canvas, 0, 0, SEND_SIDE, SEND_SIDE);
    small.toBlob((blob) => blob && send(blob, "drawing.png"), "image/png");
  }

  async function usePhoto(file) {
    if (!file) return;
    strokes = [];
    photo = null;
    try {
      photo = await createImageBitmap(file);
    } catch {
      photo = null; // not an image the browser shows; the server still says what is wrong
    }
    redraw();
    updateButtons();
    await send(file, file.name || "photo");
  }

  upload.addEventListener("change", () => {
    usePhoto(upload.files[0]);
    upload.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    dropzone.addEventListener(name, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    dropzone.addEventListener(name, () => dropzone.classList.remove("dragging"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    usePhoto(event.dataTransfer.files[0]);
  });

  async function loadModelInfo() {
    const line = $("model");
    try {
      const info = await (await fetch("/api/model")).json();
      const accuracy = info.accuracy == null ? "" : `, ${(info.accuracy * 100).toFixed(2)}% on MNIST test`;
      line.textContent = `model: ${info.name}${info.recipe ? ` (${info.recipe})` : ""}${accuracy}`;
    } catch {
      line.textContent = "model information unavailable";
    }
  }

  buildBars();
  window.addEventListener("resize", resize);
  resize();
  showIdle();
  updateButtons();
  loadModelInfo();
})();
