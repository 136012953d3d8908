#!/usr/bin/env node
// Drives the official @google/genai JS SDK's Live API against an openlive
// server and prints exactly one JSON line on stdout describing the outcome.
//
// Env:
//   OPENLIVE_BASE_URL    e.g. http://127.0.0.1:8080 or https://127.0.0.1:8443 (required)
//   OPENLIVE_API_KEY     default "test-key"
//   OPENLIVE_MODEL       default "gemini-live-2.5-flash-preview"
//   OPENLIVE_TIMEOUT_MS  overall timeout, default 60000
//   NODE_EXTRA_CA_CERTS  set by the caller to trust a self-signed cert
// Args:
//   argv[2]  prompt text, default "Say hello."
//
// Success: {"ok":true,"texts":[...],"messageCount":N,"turnComplete":true,
//           "generationComplete":bool,"usageMetadata":{...}|null,"setupComplete":bool}
// Failure: {"ok":false,"error":"...","closeCode":N|null,"closeReason":"..."}, exit 1.

import { GoogleGenAI, Modality } from '@google/genai';

const baseUrl = process.env.OPENLIVE_BASE_URL;
const apiKey = process.env.OPENLIVE_API_KEY || 'test-key';
const model = process.env.OPENLIVE_MODEL || 'gemini-live-2.5-flash-preview';
const timeoutMs = Number(process.env.OPENLIVE_TIMEOUT_MS) > 0
  ? Number(process.env.OPENLIVE_TIMEOUT_MS)
  : 60000;
const prompt = process.argv[2] ?? 'Say hello.';

const texts = [];
let messageCount = 0;
let sawSetupComplete = false;
let generationComplete = false;
let usageMetadata = null;
let closeCode = null;
let closeReason = '';
let session = null;
let finished = false;

function emit(obj, code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

function fail(error) {
  const msg = error instanceof Error ? error.message : String(error);
  try {
    session?.close();
  } catch {
    // ignore: socket may already be closed
  }
  emit({ ok: false, error: msg, closeCode, closeReason }, 1);
}

const timer = setTimeout(
  () => fail(`timeout after ${timeoutMs} ms waiting for turnComplete`),
  timeoutMs,
);

process.on('unhandledRejection', (reason) => fail(`unhandled rejection: ${reason?.stack || reason}`));
process.on('uncaughtException', (err) => fail(`uncaught exception: ${err?.stack || err}`));

function onmessage(msg) {
  if (finished) return;
  messageCount += 1;
  if (msg.setupComplete !== undefined && msg.setupComplete !== null) {
    sawSetupComplete = true;
  }
  const text = msg.text; // SDK getter: concatenated non-thought text parts, or undefined
  if (typeof text === 'string' && text.length > 0) {
    texts.push(text);
  }
  if (msg.usageMetadata) {
    usageMetadata = msg.usageMetadata;
  }
  const sc = msg.serverContent;
  if (sc?.generationComplete) {
    generationComplete = true;
  }
  if (sc?.turnComplete) {
    try {
      session?.close();
    } catch {
      // ignore
    }
    emit({
      ok: true,
      texts,
      messageCount,
      turnComplete: true,
      generationComplete,
      usageMetadata,
      setupComplete: sawSetupComplete || Boolean(session?.setupComplete),
    }, 0);
  }
}

async function main() {
  if (!baseUrl) throw new Error('OPENLIVE_BASE_URL is not set');
  const ai = new GoogleGenAI({ apiKey, httpOptions: { baseUrl } });
  session = await ai.live.connect({
    model,
    config: { responseModalities: [Modality.TEXT] },
    callbacks: {
      onopen: () => {},
      onmessage,
      onerror: (e) => {
        fail(`websocket error: ${e?.message || e?.error?.message || 'unknown'}`);
      },
      onclose: (e) => {
        closeCode = typeof e?.code === 'number' ? e.code : null;
        closeReason = e?.reason ? String(e.reason) : '';
        if (!finished) {
          fail(`connection closed before turnComplete (code ${closeCode}): ${closeReason}`);
        }
      },
    },
  });
  // connect() resolves only after the server's setupComplete arrived.
  sawSetupComplete = sawSetupComplete || Boolean(session.setupComplete);
  session.sendClientContent({
    turns: [{ role: 'user', parts: [{ text: prompt }] }],
    turnComplete: true,
  });
}

main().catch(fail);
