// The browser client of the streamser stream protocol (docs/protocol.md): the microphone
// through an AudioWorklet, float32 frames over a WebSocket, estimates plotted on a canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const WINDOW_S = 60; // seconds of history on the plot
const HISTORY = 4000; // estimates kept
const state = {
  ctx: null, ws: null, node: null, media: null,
  points: [], sent: [], framesSent: 0, estimates: 0, drawPending: false,
};

function show(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/stream`;
}

async function start() {
  show("error", "");
  $("start").disabled = true;
  try {
    state.media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
               autoGainControl: false },
    });
    state.ctx = new AudioContext();
    await state.ctx.audioWorklet.addModule("worklet.js");
    await state.ctx.resume();
  } catch (e) {
    fail(`microphone: ${e.message || e} (browsers allow it only on localhost or over HTTPS)`);
    return;
  }
  const hello = {
    type: "hello", protocol: 1, sample_rate_hz: Math.round(state.ctx.sampleRate), channels: 1,
    format: "float32", mode: "live", hop_s: Number($("hop").value), name: "browser",
  };
  if ($("token").value) hello.token = $("token").value;
  const ws = new WebSocket(streamUrl());
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => { ws.send(JSON.stringify(hello)); $("state").textContent = "connecting"; };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => {
    $("state").textContent = `closed (${event.code}${event.reason ? " " + event.reason : ""})`;
    teardown();
  };
  ws.onerror = () => fail(`cannot talk to the server at ${streamUrl()}`);
}

function startCapture() {
  const ctx = state.ctx;
  const source = ctx.createMediaStreamSource(state.media);
  const node = new AudioWorkletNode(ctx, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
  node.port.onmessage = (event) => {
    const block = event.data;
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(block.buffer);
      state.framesSent += block.length;
      state.sent.push([state.framesSent, performance.now()]);
      if (state.sent.length > 1200) state.sent.splice(0, 600);
    }
  };
  source.connect(node);
  node.connect(ctx.destination); // silent: the processor writes no output
  state.node = node;
  $("stop").disabled = false;
}

function onMessage(m) {
  if (m.type === "ready") {
    const model = m.model || {};
    $("model").textContent =
      `${model.name} (${m.precision} on ${m.device}), window ${m.window_s} s, hop ${m.hop_s} s`;
    show("warning", model.demo ? `The server runs the ${model.warning || "demo model"}.` : "");
    $("state").textContent = "streaming";
    startCapture();
  } else if (m.type === "estimate") {
    state.estimates += 1;
    $("estimates").textContent = String(state.estimates);
    state.points.push(m);
    if (state.points.length > HISTORY) state.points.splice(0, state.points.length - HISTORY);
    showLatency(m);
    requestDraw();
  } else if (m.type === "status") {
    $("status").textContent =
      `lag ${m.lag_s.toFixed(2)} s, skipped ${m.skipped_windows}, dropped ${m.dropped_samples}`;
  } else if (m.type === "busy") {
    show("warning", `The server is busy: ${m.message}`);
  } else if (m.type === "error") {
    fail(`${m.code}: ${m.message}`);
  } else if (m.type === "closing") {
    $("state").textContent = "the server is shutting down";
  }
}

function showLatency(m) {
  // From sending the block that held the window's last sample to showing its estimate.
  const endFrame = m.t_end_s * state.ctx.sampleRate;
  const sent = state.sent.find(([frames]) => frames >= endFrame);
  const here = sent ? (performance.now() - sent[1]) / 1000 : null;
  $("latency").textContent = (here !== null ? `${here.toFixed(2)} s here, ` : "") +
    `${m.latency_s.toFixed(2)} s on the server`;
}

function requestDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => { state.drawPending = false; draw(); });
}

function draw() {
  const canvas = $("plot");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#8886";
  g.beginPath();
  g.moveTo(pad, h / 2); g.lineTo(w, h / 2); // valence 0, arousal 0.5
  g.stroke();
  const pts = state.points;
  if (!pts.length) return;
  const tEnd = pts[pts.length - 1].t_end_s;
  const x = (t) => pad + (w - pad) * (1 - (tEnd - t) / WINDOW_S);
  const shown = pts.filter((p) => tEnd - p.t_end_s <= WINDOW_S && p.arousal !== null);
  const css = getComputedStyle(document.documentElement);
  const traces = [
    ["arousal", css.getPropertyValue("--arousal"), (v) => h - pad - v * (h - 2 * pad)],
    ["valence", css.getPropertyValue("--valence"), (v) => h - pad - (v + 1) / 2 * (h - 2 * pad)],
  ];
  let drawn = 0;
  for (const [key, colour, y] of traces) {
    g.strokeStyle = colour;
    g.fillStyle = colour;
    g.lineWidth = 2;
    g.beginPath();
    shown.forEach((p, i) => (i ? g.lineTo(x(p.t_end_s), y(p[key])) : g.moveTo(x(p.t_end_s), y(p[key]))));
    g.stroke();
    for (const p of shown) {
      g.globalAlpha = p.is_speech ? 1 : 0.3;
      g.beginPath();
      g.arc(x(p.t_end_s), y(p[key]), 3, 0, 2 * Math.PI);
      g.fill();
      drawn += 1;
    }
    g.globalAlpha = 1;
  }
  $("points").textContent = String(drawn / 2);
  canvas.dataset.drawn = String(drawn / 2);
}

function fail(text) {
  show("error", text);
  teardown();
}

function stop() {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.close(1000, "stopped");
  teardown();
}

function teardown() {
  if (state.node) { state.node.port.onmessage = null; state.node.disconnect(); state.node = null; }
  if (state.media) { state.media.getTracks().forEach((t) => t.stop()); state.media = null; }
  if (state.ctx) { state.ctx.close(); state.ctx = null; }
  state.sent = []; state.framesSent = 0;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
