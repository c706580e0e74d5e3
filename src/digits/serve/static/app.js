// The drawing page: strokes on a canvas (pointer events: mouse, touch and pen alike), sent to
// /api/predict and /api/read after every stroke; a dropped or chosen photo goes the same way, as
// its own file, and strokes drawn on it are sent on the photo at the photo's own size.
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
  const feedbackBox = $("feedback");
  const feedbackRight = $("feedback-right");
  const feedbackDigits = $("feedback-digits");
  const feedbackStatus = $("feedback-status");

  // Strokes are kept in canvas-relative units (0–1), so a resize or undo redraws them exactly.
  let strokes = [];
  let current = null;
  // An uploaded image drawn under the strokes: the file as chosen (sent again, byte for byte,
  // whenever no stroke is on it) and the decoded bitmap the canvas shows.
  let photo = null; // { file, name, bitmap }
  let sequence = 0; // answers to older requests are dropped when a newer one was sent
  let penUps = 0; // strokes finished so far; each answer records the one it answers

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

  // Where the photo sits on the canvas, in canvas units: fitted whole and centred.
  function photoRect() {
    const { width, height } = photo.bitmap;
    const fit = Math.min(1 / width, 1 / height);
    const w = width * fit;
    const h = height * fit;
    return { x: (1 - w) / 2, y: (1 - h) / 2, w, h };
  }

  // Draw in canvas units on `target`: one unit is `scale` pixels, the origin at (dx, dy).
  function useUnits(target, scale, dx = 0, dy = 0) {
    target.setTransform(scale, 0, 0, scale, dx, dy);
  }

  function redraw() {
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    useUnits(context, canvas.width);
    if (photo) {
      const rect = photoRect();
      context.drawImage(photo.bitmap, rect.x, rect.y, rect.w, rect.h);
    }
    for (const stroke of strokes) drawStroke(context, stroke, 0);
  }

  // One stroke in canvas units (the caller's transform maps them to pixels), from point `from`
  // on: while drawing, only the new part of the stroke is added.
  function drawStroke(target, points, from) {
    target.strokeStyle = "#000";
    target.fillStyle = "#000";
    target.lineWidth = BRUSH;
    target.lineCap = "round";
    target.lineJoin = "round";
    if (points.length === 1) {
      target.beginPath();
      target.arc(points[0][0], points[0][1], BRUSH / 2, 0, 2 * Math.PI);
      target.fill();
      return;
    }
    target.beginPath();
    const start = Math.max(0, from - 1);
    target.moveTo(points[start][0], points[start][1]);
    for (let i = start + 1; i < points.length; i++) target.lineTo(points[i][0], points[i][1]);
    target.stroke();
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
    drawStroke(context, current.points, 0);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== current.id) return;
    event.preventDefault();
    const from = current.points.length;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) current.points.push(point(e));
    drawStroke(context, current.points, from);
  });

  function endStroke(event) {
    if (!current || event.pointerId !== current.id) return;
    strokes.push(current.points);
    current = null;
    // When the pen left the canvas, for measuring how long the answer takes (the browser tests
    // read these; the page's policy lets no test script run in it).
    penUps++;
    prediction.dataset.penUp = String(penUps);
    prediction.dataset.penUpAt = performance.now().toFixed(1);
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
    hideExplanation(); // an overlay belongs to the preview it was drawn for
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
    hideFeedback();
    setPreview(null);
    readBox.hidden = true;
    setBars(null);
  }

  function showError(error) {
    prediction.textContent = "!";
    prediction.dataset.state = "error";
    prediction.dataset.error = error.kind;
    status.textContent = error.message;
    setPreview(null);
    readBox.hidden = true;
    setBars(null);
  }

  function showPrediction(result) {
    // A "no digit" answer has no confidence and no probabilities (both null).
    const percent = result.confidence === null ? null : Math.round(result.confidence * 100);
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
    setBars(digitless ? null : result.probabilities ?? null);
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
      sure.textContent = found.confidence === null ? "–" : `${Math.round(found.confidence * 100)}%`;
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

  // Why a request failed, in three kinds a person acts on differently: the service is out of
  // reach (nothing about the drawing), it refused the image (4xx: change the image), or it is
  // busy or failing (5xx, or a request that timed out or was rate limited: try again).
  class RequestFailure extends Error {
    constructor(kind, message) {
      super(message);
      this.kind = kind;
    }
  }

  // An image goes as the body itself (its own type): no form for the service to parse, the
  // cheapest way in. A file whose type the browser does not know goes as a form upload.
  function requestBody(blob, name) {
    if (blob.type.startsWith("image/")) {
      return { body: blob, headers: { "Content-Type": blob.type } };
    }
    const form = new FormData();
    form.append("file", blob, name);
    return { body: form };
  }

  async function post(path, blob, name) {
    let response;
    try {
      response = await fetch(path, { method: "POST", ...requestBody(blob, name) });
    } catch {
      throw new RequestFailure(
        "network",
        "Cannot reach the digits service: check that it is running and the connection is up, " +
          "then draw or upload again."
      );
    }
    const body = await response.json().catch(() => null);
    if (response.ok && body) return body;
    const detail = body && typeof body.detail === "string" ? body.detail : "";
    const status = response.status;
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      throw new RequestFailure(
        "input",
        `Could not use that image: ${detail || `the service answered ${status}`}.`
      );
    }
    const busy = status === 503 || status === 429;
    throw new RequestFailure(
      "server",
      busy
        ? "The service is busy right now: try again in a moment."
        : `The service failed to answer (${status}${detail ? `: ${detail}` : ""}): try again in a moment.`
    );
  }

  async function send(blob, name) {
    const mine = ++sequence;
    const answersPenUp = penUps;
    prediction.dataset.state = "busy";
    delete prediction.dataset.error;
    hideFeedback();
    try {
      const [predicted, read] = await Promise.all([
        post("/api/predict", blob, name),
        post("/api/read", blob, name).catch(() => null),
      ]);
      if (mine !== sequence) return;
      if (read && read.digits.length >= 2) showSeveral(read);
      else {
        showPrediction(predicted);
        offerFeedback(predicted, blob, name);
        explainAnswer(predicted, blob, name, mine);
      }
    } catch (error) {
      if (mine !== sequence) return;
      if (!(error instanceof RequestFailure)) {
        console.error(error); // a fault of this page, not of the request
        error = new RequestFailure("page", "The answer could not be shown: reload the page.");
      }
      showError(error);
    }
    prediction.dataset.answers = String(answersPenUp);
    prediction.dataset.answeredAt = performance.now().toFixed(1);
  }

  // A canvas as a PNG or JPEG file, encoded at once. Not canvas.toBlob: Chromium encodes for it
  // in an idle period and waits up to a second for one, so on a page busy showing the previous
  // answer every stroke after the first was sent a second late.
  function canvasFile(source, type, quality) {
    const url = source.toDataURL(type, quality);
    const bytes = atob(url.slice(url.indexOf(",") + 1));
    const buffer = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
    return new Blob([buffer], { type });
  }

  // The drawing is sent at this many pixels a side rather than at the screen's resolution (up to
  // ~1300 on a phone): still eight times MNIST's 20-pixel digit box, a few kilobytes to upload,
  // and several times less work for the server's preparation of the image.
  const SEND_SIDE = 160;
  const small = document.createElement("canvas");
  small.width = SEND_SIDE;
  small.height = SEND_SIDE;
  const smallContext = small.getContext("2d");

  // Strokes on a photo go on the photo itself, at its own aspect and at most this many pixels
  // on its longer side: the canvas would add white bands around it, which the server reads as
  // the edge of the paper, and shrink a small digit in a large photo to a few pixels.
  const PHOTO_SIDE = 1024;
  const composite = document.createElement("canvas");
  const compositeContext = composite.getContext("2d");

  function photoWithStrokes() {
    const { bitmap } = photo;
    const shrink = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    composite.width = Math.max(1, Math.round(bitmap.width * shrink));
    composite.height = Math.max(1, Math.round(bitmap.height * shrink));
    compositeContext.setTransform(1, 0, 0, 1, 0, 0);
    compositeContext.fillStyle = "#fff"; // under a transparent photo, as the canvas shows it
    compositeContext.fillRect(0, 0, composite.width, composite.height);
    compositeContext.drawImage(bitmap, 0, 0, composite.width, composite.height);
    const rect = photoRect();
    const scale = composite.width / rect.w; // photo pixels per canvas unit
    useUnits(compositeContext, scale, -rect.x * scale, -rect.y * scale);
    for (const stroke of strokes) drawStroke(compositeContext, stroke, 0);
    // JPEG: a photo-sized PNG takes several times as long to encode, on the page's only thread.
    return canvasFile(composite, "image/jpeg", 0.92);
  }

  function recognise() {
    if (isEmpty()) return;
    if (photo && strokes.length === 0) {
      send(photo.file, photo.name);
    } else if (photo) {
      send(photoWithStrokes(), "photo-drawn-on.jpg");
    } else {
      smallContext.imageSmoothingEnabled = true;
      smallContext.imageSmoothingQuality = "high";
      smallContext.drawImage(canvas, 0, 0, SEND_SIDE, SEND_SIDE);
      send(canvasFile(small, "image/png"), "drawing.png");
    }
  }

  async function usePhoto(file) {
    if (!file) return;
    strokes = [];
    photo = null;
    const name = file.name || "photo";
    try {
      photo = { file, name, bitmap: await createImageBitmap(file) };
    } catch {
      photo = null; // not an image the browser shows; the server still says what is wrong
    }
    redraw();
    updateButtons();
    await send(file, name);
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

  // --- corrections ---------------------------------------------------------------------------
  // After a single-digit answer, "Right" or "Wrong, it is N" sends the very image the answer was
  // for, with the person's digit, to /api/feedback (which classifies it again itself). Shown only
  // when /api/model says the service keeps corrections.

  let feedbackOn = false;
  let answered = null; // { blob, name, digit } of the answer shown, while it may be corrected

  function buildFeedback() {
    for (let digit = 0; digit < 10; digit++) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = String(digit);
      button.dataset.digit = String(digit);
      button.addEventListener("click", () => sendFeedback(digit));
      feedbackDigits.appendChild(button);
    }
    feedbackRight.addEventListener("click", () => {
      if (answered && answered.digit !== null) sendFeedback(answered.digit);
    });
  }

  function setFeedbackButtons(disabled) {
    feedbackRight.disabled = disabled;
    feedbackDigits.querySelectorAll("button").forEach((button) => (button.disabled = disabled));
  }

  function setFeedbackStatus(state, text) {
    feedbackStatus.dataset.state = state;
    feedbackStatus.textContent = text;
  }

  function hideFeedback() {
    answered = null;
    feedbackBox.hidden = true;
  }

  function offerFeedback(result, blob, name) {
    if (!feedbackOn) return;
    answered = { blob, name, digit: result.digit };
    // "Wrong" only where the model named a digit; a "not sure" is completed, not contradicted.
    const lead = result.answer === "not_sure" ? "It is" : "Wrong, it is";
    $("feedback-wrong").textContent = lead;
    feedbackRight.hidden = result.digit === null;
    feedbackDigits.querySelectorAll("button").forEach((button) => {
      button.setAttribute("aria-label", `${lead} ${button.dataset.digit}`);
      button.hidden = button.dataset.digit === String(result.digit); // that one is "Right"
    });
    setFeedbackButtons(false);
    setFeedbackStatus("idle", "");
    feedbackBox.hidden = false;
  }

  async function sendFeedback(label) {
    const sent = answered;
    if (!sent) return;
    setFeedbackButtons(true);
    setFeedbackStatus("sending", "Saving…");
    const form = new FormData();
    form.append("file", sent.blob, sent.name);
    form.append("label", String(label));
    let response = null;
    let body = null;
    try {
      response = await fetch("/api/feedback", { method: "POST", body: form });
      body = await response.json().catch(() => null);
    } catch {
      response = null;
    }
    if (answered !== sent) return; // a newer answer replaced this one meanwhile
    if (response && response.ok && body) {
      feedbackStatus.dataset.id = String(body.id);
      setFeedbackStatus("saved", `Thanks, saved as ${label}.`);
      return;
    }
    const detail = body && typeof body.detail === "string" ? `: ${body.detail}` : "";
    setFeedbackStatus(
      "error",
      response
        ? `Could not save the correction (${response.status}${detail}).`
        : "Could not save the correction: the service cannot be reached."
    );
    setFeedbackButtons(false);
  }

  // --- why: which pixels drove the answer --------------------------------------------------
  // With "Why?" pressed, a single-digit answer is followed by a request to /api/explain for the
  // very image it answered; the overlay it returns (the 28×28, red where a pixel pushed towards
  // the digit, blue where away) is laid over the preview. The answer itself is /api/predict's.

  const whyButton = $("why");
  const explanation = $("explanation");
  const whyLegend = $("why-legend");
  let whyOn = false;
  let explainable = null; // { blob, name, mine } of the answer shown, while it can be explained

  function hideExplanation() {
    explanation.hidden = true;
    explanation.removeAttribute("src");
    explanation.dataset.state = "idle";
    whyLegend.hidden = true;
  }

  function explainAnswer(result, blob, name, mine) {
    explainable = result.answer === "no_digit" || !result.preview ? null : { blob, name, mine };
    explainShown();
  }

  async function explainShown() {
    const asked = explainable;
    if (!whyOn || !asked || asked.mine !== sequence) return;
    explanation.dataset.state = "busy";
    let result = null;
    try {
      result = await post("/api/explain", asked.blob, asked.name);
    } catch {
      result = null;
    }
    // Too late: a newer image was sent, or "Why?" was switched off meanwhile.
    if (!whyOn || explainable !== asked || asked.mine !== sequence) return;
    if (!result || !result.overlay) {
      explanation.dataset.state = "error";
      whyLegend.textContent = "No explanation for this one.";
      whyLegend.hidden = false;
      return;
    }
    explanation.src = result.overlay;
    explanation.alt =
      `Which pixels drove the answer ${result.explained}: ` +
      "red pushed towards it, blue away from it";
    explanation.hidden = false;
    explanation.dataset.state = "shown";
    whyLegend.textContent = `red: towards ${result.explained} · blue: away`;
    whyLegend.hidden = false;
  }

  whyButton.addEventListener("click", () => {
    whyOn = !whyOn;
    whyButton.setAttribute("aria-pressed", String(whyOn));
    if (whyOn) explainShown();
    else hideExplanation();
  });

  async function loadModelInfo() {
    const line = $("model");
    try {
      const info = await (await fetch("/api/model")).json();
      const accuracy = info.accuracy == null ? "" : `, ${(info.accuracy * 100).toFixed(2)}% on MNIST test`;
      line.textContent = `model: ${info.name}${info.recipe ? ` (${info.recipe})` : ""}${accuracy}`;
      feedbackOn = info.feedback === true;
    } catch {
      line.textContent = "model information unavailable";
    }
  }

  buildBars();
  buildFeedback();
  window.addEventListener("resize", resize);
  resize();
  redraw(); // also when resize() found the size unchanged: it sets the units strokes are drawn in
  showIdle();
  updateButtons();
  loadModelInfo();
})();
