// "Try an image": send the picture over the request websocket, show each state change with
// its time, then the annotated image (boxes drawn by the renderer; drawn here over the
// original when the annotated one is not there yet) and refresh the recent requests.
(function () {
  "use strict";
  const form = document.getElementById("try-form");
  const state = document.getElementById("try-state");
  const errorBox = document.getElementById("try-error");
  const table = document.getElementById("try-detections");
  const figure = document.getElementById("try-figure");
  const img = document.getElementById("try-result");
  const caption = document.getElementById("try-caption");
  const placeholder = document.getElementById("try-placeholder");
  const SVG = "http://www.w3.org/2000/svg";
  const STEPS = ["created", "processing", "processed", "finished"];

  function clock(iso) {
    return iso ? iso.slice(11, 23) : "";
  }

  function showState(name, timestamps) {
    state.textContent = name;
    state.className = "badge state-" + name;
    document.querySelectorAll("#try-timeline li").forEach(function (li) {
      const at = timestamps ? timestamps[li.dataset.step] : null;
      li.classList.toggle("reached", Boolean(at));
      li.querySelector("span").textContent = clock(at);
    });
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function overlay(request) {
    const old = figure.querySelector("svg");
    if (old) old.remove();
    if (request.render_url || !request.width) return;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + request.width + " " + request.height);
    svg.setAttribute("preserveAspectRatio", "none");
    request.result.detections.forEach(function (d) {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", d.box[0]);
      r.setAttribute("y", d.box[1]);
      r.setAttribute("width", d.box[2] - d.box[0]);
      r.setAttribute("height", d.box[3] - d.box[1]);
      r.setAttribute("fill", "none");
      r.setAttribute("stroke", "#f97316");
      r.setAttribute("stroke-width", Math.max(2, request.width / 300));
      svg.appendChild(r);
    });
    figure.appendChild(svg);
  }

  function showResult(request) {
    const found = request.result ? request.result.detections : [];
    const body = table.querySelector("tbody");
    body.replaceChildren();
    found.forEach(function (d) {
      const row = document.createElement("tr");
      cell(row, d.label);
      cell(row, d.score.toFixed(2));
      cell(row, d.box.map(function (v) { return Math.round(v); }).join(", "), "mono");
      body.appendChild(row);
    });
    table.hidden = false;
    img.src = request.render_url || request.image_url;
    caption.textContent = found.length + " detection" + (found.length === 1 ? "" : "s") +
      (request.result ? " · " + request.result.model.name + " v" + request.result.model.version : "");
    figure.hidden = false;
    placeholder.hidden = true;
    overlay(request);
  }

  function refreshRecent() {
    fetch("/api/v1/requests?limit=20", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) return;
        const body = document.querySelector("#recent-requests tbody");
        const wide = document.querySelectorAll("#recent-requests thead th").length > 8;
        body.replaceChildren();
        page.items.forEach(function (r) {
          const row = document.createElement("tr");
          cell(row, r.request_id.slice(0, 12), "mono");
          if (wide) cell(row, r.client_id);
          const badge = document.createElement("span");
          badge.className = "badge state-" + r.state;
          badge.textContent = r.state;
          cell(row, "").appendChild(badge);
          STEPS.forEach(function (s) { cell(row, clock(r.timestamps[s]), "mono"); });
          cell(row, clock(r.timestamps.interrupted || r.timestamps.failed), "mono");
          cell(row, r.created_by || "");
          body.appendChild(row);
        });
      });
  }

  function options(data) {
    const sent = {};
    const threshold = data.get("score_threshold");
    if (threshold) sent.score_threshold = Number(threshold);
    const classes = data.get("classes");
    if (classes) sent.classes = classes.split(",").map(function (c) { return c.trim(); }).filter(Boolean);
    const client = data.get("client_id");
    if (client) sent.client_id = client;
    return sent;
  }

  if (!form) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const file = document.getElementById("try-image").files[0];
    errorBox.hidden = true;
    if (!file) {
      showError("Choose an image first.");
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/api/v1/requests/ws");
    socket.binaryType = "arraybuffer";
    showState("sending", null);
    socket.addEventListener("open", function () {
      socket.send(JSON.stringify(options(new FormData(form))));
      file.arrayBuffer().then(function (bytes) { socket.send(bytes); });
    });
    socket.addEventListener("message", function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "state") {
        showState(message.state, message.timestamps);
        if (message.state === "finished") refreshRecent();
      } else if (message.type === "result") {
        showState(message.request.state, message.request.timestamps);
        showResult(message.request);
      } else if (message.type === "failed") {
        showState(message.request.state, message.request.timestamps);
        showError(message.request.failure_reason || "the request ended early");
        refreshRecent();
      } else if (message.type === "error") {
        showError(message.detail);
        refreshRecent();
      }
    });
    socket.addEventListener("error", function () {
      showError("The connection to the server failed.");
    });
  });
})();
