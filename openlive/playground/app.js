// The playground page: settings, the conversation view, and the glue between the microphone,
// the Live API session and the speaker. No framework, no build step: plain ES modules.

import { LiveClient, base64ToBytes, liveUrl } from "./live-client.js";
import { Microphone, Player } from "./audio.js";
import { FrameSource } from "./camera.js";
import { WEATHER_DECLARATION, answerCall } from "./tools.js";

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "openlive.playground.settings";
const API_KEY_KEY = "openlive.playground.apiKey";
const VOICE_RMS = 0.015; // a mic chunk louder than this (about -36 dBFS) counts as the user speaking

// Everything a test or a curious developer may want to look at, on `window.playground`.
const stats = {
  playedSamples: 0, // reply audio heard, in samples at the server's rate (24 kHz)
  queuedSamples: 0, // reply audio scheduled for playback
  flushedSamples: 0, // reply audio dropped unheard when the reply was interrupted
  sentSamples: 0, // microphone audio sent, 16 kHz samples
  latencies: [], // per turn: { kind: "typed"|"spoken", ms }
  toolCalls: 0,
  interruptions: 0,
};
const playground = (window.playground = {
  ready: false, state: "idle", stats, config: null, lastSetup: null, lastToolResponse: null, sent: {},
  pendingAudioS: () => player?.pendingS ?? 0, // reply audio queued but not yet heard
});

let config = null; // from playground/config.json
let audioCtx = null;
let client = null;
let player = null;
let mic = null;
let frames = null; // the camera or the shared screen, whichever is on (one at a time)
let modality = "AUDIO";
let userEntry = null; // the user bubble being filled by inputTranscription
let modelEntry = null; // the model bubble being filled by the reply
let turn = null; // { kind, endedAt, answered }: when the user finished, for the latency
let lastVoiceAt = 0; // performance.now() of the last loud microphone chunk
let replyBeingInterrupted = false; // typed over a reply: its rest is not the new turn's answer
const toolCards = new Map(); // function call id -> its card, for cancellations

// ------------------------------------------------------------------ start-up

init();

async function init() {
  try {
    const response = await fetch("playground/config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    config = playground.config = await response.json();
  } catch (err) {
    setStatus("error", `Could not load the server's settings: ${err.message}`);
    document.body.dataset.state = "error";
    return;
  }
  fillSelect($("model"), config.models.map((m) => [m.name, m.displayName]));
  fillSelect($("voice"), config.voices.map((v) => [v.name, `${v.name} · ${v.gender} (${v.engine})`]));
  fillSelect($("language"), config.languages.map((l) => [l.code, `${l.name} (${l.code})`]));
  $("model").value = config.defaultModel;
  $("voice").value = config.defaultVoice;
  $("language").value = config.defaultLanguage;
  $("key-hint").textContent = config.apiKeyRequired ? "required by this server" : "optional on this server";
  restoreSettings();

  $("settings").addEventListener("submit", (e) => { e.preventDefault(); client ? disconnect() : connect(); });
  $("settings").addEventListener("change", () => { saveSettings(); updateVoiceState(); });
  $("api-key").addEventListener("input", () => localStorage.setItem(API_KEY_KEY, $("api-key").value));
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); sendTyped(); });
  $("mic").addEventListener("click", toggleMic);
  $("camera").addEventListener("click", () => toggleFrames("camera"));
  $("screen").addEventListener("click", () => toggleFrames("screen"));
  setInterval(updateStats, 250);

  updateVoiceState();
  $("connect").disabled = false;
  setStatus("idle", "Disconnected");
  document.body.dataset.state = "ready";
  playground.ready = true;
}

function fillSelect(select, options) {
  select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
}

function readSettings() {
  return {
    model: $("model").value,
    modality: document.querySelector("input[name=modality]:checked").value,
    voice: $("voice").value,
    language: $("language").value,
    system: $("system").value,
    weather: $("tool-weather").checked,
  };
}

function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(readSettings()));
}

function restoreSettings() {
  $("api-key").value = localStorage.getItem(API_KEY_KEY) || "";
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}"); } catch { /* ignore */ }
  // Only values this server still offers.
  for (const id of ["model", "voice", "language"]) {
    if (saved[id] && [...$(id).options].some((o) => o.value === saved[id])) $(id).value = saved[id];
  }
  if (saved.modality) {
    const value = saved.modality === "TEXT" ? "TEXT" : "AUDIO";
    document.querySelector(`input[name=modality][value="${value}"]`).checked = true;
  }
  if (typeof saved.system === "string") $("system").value = saved.system;
  $("tool-weather").checked = !!saved.weather;
}

function updateVoiceState() {
  $("voice").disabled = !!client || document.querySelector("input[name=modality]:checked").value !== "AUDIO";
}

// ------------------------------------------------------------------ the session

/** The `setup` message, in the wire's camelCase, from the settings. */
function buildSetup(s) {
  const setup = { model: `models/${s.model}`, generationConfig: { responseModalities: [s.modality] } };
  const speechConfig = {};
  if (s.modality === "AUDIO" && s.voice) speechConfig.voiceConfig = { prebuiltVoiceConfig: { voiceName: s.voice } };
  if (s.language) speechConfig.languageCode = s.language;
  if (Object.keys(speechConfig).length) setup.generationConfig.speechConfig = speechConfig;
  if (s.system.trim()) setup.systemInstruction = { parts: [{ text: s.system.trim() }] };
  if (s.weather) setup.tools = [{ functionDeclarations: [WEATHER_DECLARATION] }];
  setup.inputAudioTranscription = {};
  if (s.modality === "AUDIO") setup.outputAudioTranscription = {};
  return setup;
}

async function connect() {
  const settings = readSettings();
  saveSettings();
  modality = settings.modality;
  // Audio starts only from a user gesture: this click.
  audioCtx = audioCtx || new AudioContext({ latencyHint: "interactive" });
  await audioCtx.resume();
  player = new Player(audioCtx, stats);
  const setup = buildSetup(settings);
  const session = new LiveClient(liveUrl(config.livePath, $("api-key").value.trim()), {
    onContent, onToolCall, onToolCallCancellation, onUsage, onClose,
    onGoAway: (g) => addNote(`The server will close this connection in ${g.timeLeft || "a moment"}.`),
    onOther: (m) => console.debug("server message", m),
    onSend: (m) => {
      const kind = Object.keys(m)[0];
      playground.sent[kind] = (playground.sent[kind] || 0) + 1;
      if (kind === "setup") playground.lastSetup = m.setup;
      if (kind === "toolResponse") playground.lastToolResponse = m.toolResponse;
    },
  });
  client = session;
  setConnectedUi(true);
  setStatus("connecting", "Connecting…");
  try {
    await session.connect(setup);
  } catch (err) {
    if (client === session) {
      addNote(`Could not connect: ${err.message}`, "error");
      teardown();
      setStatus("error", "Not connected");
    }
    return;
  }
  $("hint")?.remove();
  setStatus("connected", `Connected · ${settings.model}`);
  $("text").disabled = $("send").disabled = $("mic").disabled = false;
  $("camera").disabled = $("screen").disabled = false;
  $("text").focus();
}

function disconnect() {
  client?.close();
  teardown();
  setStatus("idle", "Disconnected");
}

function teardown() {
  stopMic(false);
  stopFrames();
  player?.flush();
  client = null;
  userEntry = modelEntry = turn = null;
  replyBeingInterrupted = false;
  setConnectedUi(false);
}

function onClose({ code, reason, wasReady }) {
  if (!client || !wasReady) return; // closed by us, or reported by connect()
  addNote(`Connection closed (${code})${reason ? ": " + reason : ""}`, code === 1000 ? "note" : "error");
  teardown();
  setStatus(code === 1000 ? "idle" : "error", "Disconnected");
}

function setConnectedUi(connected) {
  for (const el of $("settings").querySelectorAll("input, select, textarea")) el.disabled = connected;
  updateVoiceState();
  $("connect").textContent = connected ? "Disconnect" : "Connect";
  $("connect").classList.toggle("danger", connected);
  if (!connected) $("text").disabled = $("send").disabled = $("mic").disabled = true;
  if (!connected) $("camera").disabled = $("screen").disabled = true;
}

// ------------------------------------------------------------------ input

function sendTyped() {
  const text = $("text").value.trim();
  if (!text || !client) return;
  // A new turn interrupts a reply in progress: the server answers `interrupted`, which flushes
  // playback. Until then, what still arrives belongs to the old reply.
  replyBeingInterrupted = !!modelEntry;
  addEntry("user", "You").text.textContent = text;
  userEntry = null;
  turn = { kind: "typed", endedAt: performance.now(), answered: false };
  client.sendText(text);
  $("text").value = "";
}

async function toggleMic() {
  if (mic) {
    stopMic(true);
    return;
  }
  const session = client;
  const starting = new Microphone(audioCtx, onMicChunk, { rate: config.inputSampleRate, chunkMs: 40 });
  $("mic").disabled = true; // until the browser has granted (or refused) the microphone
  try {
    await starting.start();
  } catch (err) {
    addNote(`Microphone: ${err.message}`, "error");
    starting.stop();
    return;
  } finally {
    $("mic").disabled = !client;
  }
  if (client !== session) {
    starting.stop(); // disconnected meanwhile
    return;
  }
  mic = starting;
  setMicUi(true);
}

// The camera or a shared screen: one JPEG a second as realtimeInput.video.
async function toggleFrames(kind) {
  const was = frames?.kind;
  stopFrames();
  if (was === kind) return;
  const session = client;
  const starting = new FrameSource(kind, (jpeg) => client?.sendVideoFrame(jpeg, "image/jpeg"),
                                   { preview: $("preview"), onEnded: () => { frames = null; setFramesUi(); } });
  try {
    await starting.start();
  } catch (err) {
    addNote(`${kind === "screen" ? "Screen sharing" : "Camera"}: ${err.message}`, "error");
    starting.stop();
    return;
  }
  if (client !== session) { starting.stop(); return; } // disconnected meanwhile
  frames = starting;
  setFramesUi();
}

function stopFrames() {
  frames?.stop();
  frames = null;
  setFramesUi();
}

function setFramesUi() {
  for (const kind of ["camera", "screen"]) {
    const on = frames?.kind === kind;
    $(kind).setAttribute("aria-pressed", String(on));
    $(kind).classList.toggle("on", on);
  }
  $("camera-label").textContent = frames?.kind === "camera" ? "Camera on" : "Camera off";
  $("screen-label").textContent = frames?.kind === "screen" ? "Sharing" : "Share screen";
}

function stopMic(tellServer) {
  if (!mic) return;
  mic.stop();
  mic = null;
  if (tellServer) client?.sendAudioStreamEnd();
  setMicUi(false);
}

function setMicUi(on) {
  $("mic").setAttribute("aria-pressed", String(on));
  $("mic").classList.toggle("on", on);
  $("mic-label").textContent = on ? "Mic on" : "Mic off";
  if (!on) $("level").value = 0;
}

function onMicChunk(pcm, rms) {
  if (!client) return;
  client.sendAudio(pcm, config.inputSampleRate);
  stats.sentSamples += pcm.length;
  if (rms > VOICE_RMS) lastVoiceAt = performance.now();
  $("level").value = Math.min(1, rms * 6);
}

// ------------------------------------------------------------------ what the server says

function onContent(content) {
  const heard = content.inputTranscription;
  if (heard?.text) {
    if (!userEntry) {
      closeModelEntry();
      userEntry = addEntry("user", "You (spoken)");
    }
    // Live captions: 2.x models send the words while the user speaks, each piece only the new ones.
    userEntry.text.textContent += heard.text;
    scrollDown();
  }
  if (heard?.finished && (!turn || turn.answered)) {
    // The user has finished speaking: the last piece (or the only one) says so.
    turn = { kind: "spoken", endedAt: lastVoiceAt || performance.now(), answered: false };
  }
  if (content.interrupted) {
    replyBeingInterrupted = false;
    player.flush();
    stats.interruptions++;
    if (modelEntry) modelEntry.meta.append(" · interrupted");
    closeModelEntry();
  }
  for (const part of content.modelTurn?.parts || []) {
    const mime = part.inlineData?.mimeType || "";
    if (mime.startsWith("audio/pcm")) {
      const rate = Number(/rate=(\d+)/.exec(mime)?.[1] || config.outputSampleRate);
      const bytes = base64ToBytes(part.inlineData.data);
      replyStarted("audio");
      player.play(new Int16Array(bytes.buffer, 0, bytes.length >> 1), rate);
    } else if (typeof part.text === "string" && !part.thought) {
      replyStarted("text");
      appendModelText(part.text);
    }
  }
  if (content.outputTranscription?.text) {
    replyStarted("transcription");
    appendModelText(content.outputTranscription.text);
  }
  if (content.turnComplete) {
    replyBeingInterrupted = false;
    closeModelEntry();
    userEntry = null;
  }
}

/**
 * Part of a reply arrived: open its bubble, and on the first audio (audio replies) or text (text
 * replies) measure the turn's latency from the moment the user finished.
 */
function replyStarted(what) {
  if (!modelEntry) {
    userEntry = null;
    modelEntry = addEntry("model", "Model");
  }
  if (replyBeingInterrupted || what === "transcription" || (modality === "AUDIO") !== (what === "audio")) return;
  if (!turn && lastVoiceAt) turn = { kind: "spoken", endedAt: lastVoiceAt, answered: false };
  if (turn && !turn.answered) {
    turn.answered = true;
    const ms = Math.round(performance.now() - turn.endedAt);
    stats.latencies.push({ kind: turn.kind, ms });
    modelEntry.meta.textContent = `${ms} ms after ${turn.kind === "typed" ? "you sent" : "you stopped speaking"}`;
    modelEntry.el.dataset.latencyMs = String(ms);
    $("stat-latency").textContent = `${ms} ms`;
  }
}

function appendModelText(text) {
  const el = modelEntry.text;
  // Transcription chunks of speech come without spaces between clauses.
  if (modality === "AUDIO" && el.textContent && !/\s$/.test(el.textContent) && !/^\s/.test(text)) el.append(" ");
  el.append(text);
  scrollDown();
}

function closeModelEntry() {
  modelEntry = null;
}

function onToolCall(toolCall) {
  closeModelEntry();
  const responses = [];
  for (const call of toolCall.functionCalls || []) {
    stats.toolCalls++;
    const card = addEntry("tool", "Tool call");
    card.el.dataset.name = call.name;
    const signature = document.createElement("code");
    signature.className = "call";
    signature.textContent = `${call.name}(${JSON.stringify(call.args || {})})`;
    const response = answerCall(call);
    const answer = document.createElement("code");
    answer.className = "answer";
    answer.textContent = `→ ${JSON.stringify(response)}`;
    card.text.append(signature, document.createElement("br"), answer);
    card.meta.textContent = "answered by this page";
    if (turn) card.meta.append(` · ${Math.round(performance.now() - turn.endedAt)} ms after you finished`);
    if (call.id) toolCards.set(call.id, card);
    responses.push({ id: call.id, name: call.name, response });
  }
  client?.sendToolResponse(responses);
}

function onToolCallCancellation(ids) {
  for (const id of ids) toolCards.get(id)?.meta.append(" · cancelled by the server");
}

function onUsage(usage) {
  const prompt = usage.promptTokenCount ?? 0;
  const response = usage.responseTokenCount ?? usage.candidatesTokenCount ?? 0;
  $("stat-tokens").textContent = `${prompt} in · ${response} out`;
}

// ------------------------------------------------------------------ the view

function addEntry(role, who) {
  const el = document.createElement("article");
  el.className = `entry ${role}`;
  const label = document.createElement("div");
  label.className = "who";
  label.textContent = who;
  const text = document.createElement("div");
  text.className = "text";
  const meta = document.createElement("div");
  meta.className = "meta";
  el.append(label, text, meta);
  $("transcript").append(el);
  scrollDown();
  return { el, text, meta };
}

function addNote(message, kind = "note") {
  const entry = addEntry(kind === "error" ? "error" : "note", kind === "error" ? "Error" : "Note");
  entry.text.textContent = message;
}

function scrollDown() {
  const box = $("transcript");
  box.scrollTop = box.scrollHeight;
}

function setStatus(state, text) {
  playground.state = state;
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function updateStats() {
  const rate = config?.outputSampleRate || 24000;
  $("stat-played").textContent = `${(stats.playedSamples / rate).toFixed(1)} s`;
  $("stat-sent").textContent = `${(stats.sentSamples / (config?.inputSampleRate || 16000)).toFixed(1)} s`;
}
