// Shiftcraft remote play in a browser: the page a render node serves.
//
// Same protocol as the Python client (client/remote.py, docs/render-node.md):
// signalling over the websocket /session (offer with proxy=true, so the node
// joins the sim as this player and forwards our input and edits), video over
// WebRTC, and the unordered, unreliable data channel "rt" for input frames,
// frame stamps and pings. Input frames are the sim's own:
// [seq, dt, forward, strafe, yaw, pitch, flags], at a fixed 60 Hz.
"use strict";

const PHYSICS_DT = 1 / 60;
const FLAG_JUMP = 1, FLAG_SNEAK = 2, FLAG_FLY = 4, FLAG_SPRINT = 8;
const MAX_PITCH = Math.PI / 2 - 1e-3;
const MOUSE_RAD = 0.0025; // radians per pixel of mouse movement
const REDUNDANCY = 4; // each input message repeats the last frames (lossy channel)

const params = new URLSearchParams(location.search);
const opts = {
  player: params.get("name") || "web-" + Math.random().toString(36).slice(2, 8),
  width: +(params.get("w") || 640) & ~1,
  height: +(params.get("h") || 360) & ~1,
  fps: +(params.get("fps") || 30),
  bitrate: +(params.get("bitrate") || 1000000),
  codec: params.get("codec") || "",
  view_distance: +(params.get("view") || 96),
  token: params.get("token") || "",
  sim_token: params.get("simtoken") || "",
};

const $ = (id) => document.getElementById(id);
const video = $("video");

// Everything a test (or a curious player) may read: window.shiftcraft.
const state = {
  state: "new", error: null, codec: "", framesShown: 0, fps: 0, kbps: 0,
  g2gMs: null, i2pMs: null, rttMs: null, offset: 0, lastStamp: null, session: "",
  yaw: 0, pitch: 0, inputsSent: 0,
};
window.shiftcraft = state;

let pc = null, ws = null, dc = null, closing = false;

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = kind;
  $("st-state").textContent = state.state;
}

function fail(message) {
  if (closing || state.error) return;
  state.error = message;
  state.state = "failed";
  setStatus(message, "error");
}

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

function preferCodec(transceiver, name) {
  // Put the wanted codec first in our offer; the node puts H264 first anyway.
  if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities("video").codecs;
  const want = "video/" + name.toLowerCase();
  const first = caps.filter((c) => c.mimeType.toLowerCase() === want);
  const rest = caps.filter((c) => c.mimeType.toLowerCase() !== want);
  if (first.length) transceiver.setCodecPreferences(first.concat(rest));
}

function iceGathered(conn, timeoutMs) {
  // Non-trickle signalling: the offer carries every candidate.
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { conn.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (conn.iceGatheringState === "complete") done(); };
    conn.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

async function connect() {
  state.state = "signalling";
  setStatus("connecting to the render node…", "connecting");
  pc = new RTCPeerConnection({ iceServers: [] });
  const tr = pc.addTransceiver("video", { direction: "recvonly" });
  preferCodec(tr, opts.codec || "H264");
  dc = pc.createDataChannel("rt", { ordered: false, maxRetransmits: 0 });
  dc.onmessage = (e) => onChannelMessage(e.data);
  // The node says why on the websocket just before closing the connection:
  // give that reason a moment to arrive first.
  dc.onclose = () => setTimeout(() => fail("the data channel to the render node closed"), 300);
  pc.ontrack = (e) => {
    // Ask the browser to show frames as soon as they decode (Chrome's hints;
    // others ignore them): the stream is paced by the node, not by a player.
    if ("playoutDelayHint" in e.receiver) e.receiver.playoutDelayHint = 0;
    if ("jitterBufferTarget" in e.receiver) e.receiver.jitterBufferTarget = 0;
    video.srcObject = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    if (s === "connected") { state.state = "streaming"; setStatus("", "ok"); }
    else if (s === "failed") fail("WebRTC connection to the render node failed");
    else if (s === "closed") setTimeout(() => fail("WebRTC connection to the render node closed"), 300);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 3000);
  ws = new WebSocket(wsUrl("/session"));
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "offer", sdp: pc.localDescription.sdp, player: opts.player, token: opts.token,
      width: opts.width, height: opts.height, fps: opts.fps, bitrate: opts.bitrate,
      codec: opts.codec, view_distance: opts.view_distance, fov: 70.0,
      proxy: true, sim_token: opts.sim_token,
    }));
  };
  ws.onmessage = async (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "answer") {
      state.session = msg.session;
      state.codec = msg.codec;
      $("st-codec").textContent = `${msg.codec} ${msg.width}x${msg.height}@${msg.fps}`;
      state.state = "connecting";
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } else if (msg.type === "configured") {
      $("st-codec").textContent = `${state.codec} ${msg.width}x${msg.height}@${msg.fps}`;
    } else if (msg.type === "bye") {
      fail("the render node ended the session: " + msg.reason);
    } else if (msg.type === "error") {
      if (msg.fatal) fail(`render node error ${msg.code}: ${msg.message}`);
      else console.warn("render node:", msg.code, msg.message);
    }
  };
  ws.onclose = () => fail("lost the connection to the render node");
}

// -- stamps, latency -----------------------------------------------------------
// A stamp per frame carries the frame's pts on the session's 90 kHz clock. The
// video frame's RTP timestamp differs from it by the sender's random origin:
// frames vote for (stamp.pts - rtp) until one offset wins (see StampMatcher).
const stamps = new Map(); // pts -> stamp
const stampOrder = [];
let ptsOffset = null;
const votes = new Map();
const g2g = [], i2p = [];
const inputSent = new Map(); // seq -> performance.now() when sent

function addStamp(s) {
  stamps.set(s.pts, s);
  stampOrder.push(s.pts);
  while (stampOrder.length > 240) stamps.delete(stampOrder.shift());
  state.lastStamp = s;
}

function matchStamp(rtp) {
  const M = 2 ** 32;
  if (ptsOffset !== null) {
    // RTP timestamps are 32-bit and wrap; our pts do not.
    return stamps.get(rtp + ptsOffset) || stamps.get(rtp + M + ptsOffset) ||
      stamps.get(rtp - M + ptsOffset) || null;
  }
  for (const pts of stampOrder.slice(-90)) {
    const o = pts - rtp;
    votes.set(o, (votes.get(o) || 0) + 1);
  }
  let best = null, bestN = 0, second = 0;
  for (const [o, n] of votes) {
    if (n > bestN) { second = bestN; best = o; bestN = n; } else if (n > second) second = n;
  }
  if (bestN >= 3 && bestN >= second + 2) { ptsOffset = best; votes.clear(); return stamps.get(rtp + best) || null; }
  if (votes.size > 20000) votes.clear();
  return null;
}

function median(a) {
  if (!a.length) return null;
  const s = a.slice().sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

function onVideoFrame(now, meta) {
  state.framesShown += 1;
  frameTimes.push(now);
  const rtp = meta.rtpTimestamp;
  if (rtp !== undefined) {
    const s = matchStamp(rtp);
    if (s) {
      const shownWall = (performance.timeOrigin + (meta.expectedDisplayTime || now)) / 1000;
      g2g.push((shownWall - (s.rt - state.offset)) * 1000);
      if (g2g.length > 120) g2g.shift();
      if (s.input >= 0) {
        for (const [seq, sent] of inputSent) {
          if (seq > s.input) break;
          i2p.push(now - sent);
          inputSent.delete(seq);
        }
        while (i2p.length > 120) i2p.shift();
      }
      drawHud(s);
    }
  }
  video.requestVideoFrameCallback(onVideoFrame);
}
const frameTimes = [];

function onChannelMessage(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return; }
  if (msg.type === "frame") addStamp(msg);
  else if (msg.type === "pong") {
    const t = Date.now() / 1000, rtt = t - msg.t;
    state.rttMs = rtt * 1000;
    if (!state.bestRtt || rtt <= state.bestRtt * 1.5) {
      state.bestRtt = Math.min(state.bestRtt || rtt, rtt);
      state.offset = msg.peer_t - (msg.t + rtt / 2);
    }
  } else if (msg.type === "ping") {
    send({ type: "pong", id: msg.id, t: msg.t, peer_t: Date.now() / 1000 });
  }
}

function send(msg) {
  if (dc && dc.readyState === "open") { dc.send(JSON.stringify(msg)); return true; }
  return false;
}

// -- HUD -----------------------------------------------------------------------------
let hotbar = [];
let selected = 0;

function drawHotbar() {
  const el = $("hotbar");
  el.innerHTML = "";
  hotbar.forEach(([id, name], i) => {
    const d = document.createElement("div");
    d.textContent = `${i + 1} ${name.toLowerCase()}`;
    if (i === selected) d.className = "sel";
    el.appendChild(d);
  });
}

function drawHud(s) {
  const deg = (r) => (r * 180 / Math.PI).toFixed(0);
  $("hud-pos").textContent =
    `${s.pos.map((v) => v.toFixed(1)).join(" ")}  yaw ${deg(s.yaw)}  pitch ${deg(s.pitch)}  remote (browser)`;
  $("hud-target").textContent = s.hit ? `target ${s.hit[0]} ${s.hit[1]} ${s.hit[2]}` : "";
}

// -- input ---------------------------------------------------------------------------
const keys = new Set();
let flying = false, jumpQueued = false, seq = 0, lastStep = performance.now(), acc = 0;
const recent = [];

addEventListener("keydown", (e) => {
  const k = e.code;
  if (k === "KeyF" && !e.repeat) flying = !flying;
  if (k === "Space") jumpQueued = true;
  if (k.startsWith("Digit")) {
    const n = +k.slice(5);
    if (n >= 1 && n <= hotbar.length) { selected = n - 1; drawHotbar(); }
  }
  keys.add(k);
  if (["Space", "KeyW", "KeyA", "KeyS", "KeyD"].includes(k)) e.preventDefault();
});
addEventListener("keyup", (e) => keys.delete(e.code));
addEventListener("blur", () => keys.clear());

video.addEventListener("click", () => {
  if (document.pointerLockElement !== video && video.requestPointerLock) video.requestPointerLock();
});
document.addEventListener("pointerlockchange", () => {
  document.body.classList.toggle("locked", document.pointerLockElement === video);
});
document.addEventListener("mousemove", (e) => {
  if (document.pointerLockElement !== video) return;
  state.yaw -= e.movementX * MOUSE_RAD; // turning right decreases yaw (world/physics.py)
  state.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, state.pitch - e.movementY * MOUSE_RAD));
});
document.addEventListener("mousedown", (e) => {
  if (document.pointerLockElement !== video || !ws || ws.readyState !== 1) return;
  const s = state.lastStamp;
  if (!s || !s.hit) return;
  const [x, y, z, nx, ny, nz] = s.hit;
  if (e.button === 0) ws.send(JSON.stringify({ type: "edit", action: "break", x, y, z, block: 0 }));
  else if (e.button === 2 && hotbar.length) {
    ws.send(JSON.stringify({
      type: "edit", action: "place", x: x + nx, y: y + ny, z: z + nz, block: hotbar[selected][0],
    }));
  }
});
addEventListener("contextmenu", (e) => e.preventDefault());

function inputFrame() {
  const axis = (a, b) => (keys.has(a) ? 1 : 0) - (keys.has(b) ? 1 : 0);
  let flags = flying ? FLAG_FLY : 0;
  if (keys.has("Space") || jumpQueued) flags |= FLAG_JUMP;
  if (keys.has("ShiftLeft") || keys.has("ShiftRight")) flags |= FLAG_SNEAK;
  if (keys.has("ControlLeft") || keys.has("ControlRight")) flags |= FLAG_SPRINT;
  jumpQueued = false;
  return [seq++, PHYSICS_DT, axis("KeyW", "KeyS"), axis("KeyD", "KeyA"), state.yaw, state.pitch, flags];
}

function tickInput() {
  // Fixed 60 Hz steps, whatever the timer's jitter (as the game's predictor).
  const now = performance.now();
  acc = Math.min(acc + (now - lastStep) / 1000, 0.25);
  lastStep = now;
  const fresh = [];
  while (acc >= PHYSICS_DT) { acc -= PHYSICS_DT; fresh.push(inputFrame()); }
  if (!fresh.length || !dc || dc.readyState !== "open") return;
  for (const f of fresh) {
    recent.push(f);
    inputSent.set(f[0], now);
  }
  while (recent.length > REDUNDANCY) recent.shift();
  while (inputSent.size > 512) inputSent.delete(inputSent.keys().next().value);
  if (send({ type: "input", frames: recent, t: Date.now() / 1000 })) state.inputsSent += fresh.length;
}

// -- stats ---------------------------------------------------------------------------
let lastBytes = 0, lastBytesAt = 0, pingId = 0;

async function tickStats() {
  pingId = (pingId + 1) >>> 0;
  send({ type: "ping", id: pingId, t: Date.now() / 1000 });
  const now = performance.now();
  while (frameTimes.length && now - frameTimes[0] > 2000) frameTimes.shift();
  state.fps = frameTimes.length / 2;
  if (pc) {
    const report = await pc.getStats();
    report.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") {
        if (lastBytesAt) state.kbps = ((r.bytesReceived - lastBytes) * 8) / (now - lastBytesAt);
        lastBytes = r.bytesReceived;
        lastBytesAt = now;
        $("st-frames").textContent = `${r.framesDecoded || 0} dec, ${r.framesDropped || 0} drop`;
      }
    });
  }
  state.g2gMs = median(g2g);
  state.i2pMs = median(i2p);
  $("st-state").textContent = state.state;
  $("st-fps").textContent = state.fps.toFixed(1);
  $("st-bitrate").textContent = `${state.kbps.toFixed(0)} kbit/s`;
  $("st-g2g").textContent = state.g2gMs === null ? "-" : `${state.g2gMs.toFixed(1)} ms`;
  $("st-i2p").textContent = state.i2pMs === null ? "-" : `${state.i2pMs.toFixed(0)} ms`;
  $("st-rtt").textContent = state.rttMs === null ? "-" : `${state.rttMs.toFixed(1)} ms`;
}

async function main() {
  try {
    const info = await (await fetch("/client.json")).json();
    hotbar = info.hotbar;
    drawHotbar();
  } catch (e) { console.warn("no hotbar", e); }
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onVideoFrame);
  setInterval(tickInput, 1000 / 120);
  setInterval(tickStats, 1000);
  addEventListener("beforeunload", () => {
    closing = true;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "bye", reason: "page closed" }));
  });
  try {
    await connect();
  } catch (e) {
    fail("cannot connect to the render node: " + e);
  }
}

main();
