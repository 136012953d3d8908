// startAudioConversation from the Firebase AI Logic Web SDK, unmodified, in a browser page.
//
// The SDK dials wss://firebasevertexai.googleapis.com itself; the browser maps that host to the
// openlive server (Chromium's --host-resolver-rules), so nothing here changes where it connects.
// The hooks below only watch: the WebSocket the SDK opens (what it sends and receives, how it
// closes) and the AudioBufferSourceNodes it starts (what it plays, at which rate). The results
// are in `window.results`; `window.talk()` runs on the Talk button, `window.hangUp()` ends.
import { initializeApp } from 'firebase/app';
import { getAI, getLiveGenerativeModel, GoogleAIBackend, ResponseModality, startAudioConversation }
  from 'firebase/ai';

const params = new URLSearchParams(location.search);
const results = window.results = {
  state: 'loading', error: null, url: null, closes: [], contextRates: [],
  sent: { setup: null, audioFrames: 0, audioBytes: 0, audioMimeTypes: [], firstAudioAt: null, lastAudioAt: null },
  received: { setupComplete: false, inputText: '', outputText: '', audioBytes: 0, turnComplete: 0,
              generationComplete: 0, interrupted: 0, other: [] },
  played: { buffers: 0, rates: [], seconds: 0, endedSeconds: 0 },
};
const status = (text) => { results.state = text; document.getElementById('status').textContent = text; };

// ---------------------------------------------------------------- watching the socket
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, ...rest) {
    super(url, ...rest);
    results.url = String(url);
    this.addEventListener('close', (e) => results.closes.push(
      { code: e.code, reason: e.reason, wasClean: e.wasClean, at: performance.now() }));
    this.addEventListener('message', async (e) => {
      const text = typeof e.data === 'string' ? e.data : await e.data.text();
      const message = JSON.parse(text);
      const r = results.received;
      if (message.setupComplete) r.setupComplete = true;
      const content = message.serverContent;
      if (content) {
        r.inputText += content.inputTranscription?.text ?? '';
        r.outputText += content.outputTranscription?.text ?? '';
        for (const part of content.modelTurn?.parts ?? []) {
          if (part.inlineData?.mimeType?.startsWith('audio/')) r.audioBytes += atob(part.inlineData.data).length;
        }
        if (content.turnComplete) r.turnComplete += 1;
        if (content.generationComplete) r.generationComplete += 1;
        if (content.interrupted) r.interrupted += 1;
      }
      const known = ['setupComplete', 'serverContent', 'usageMetadata'];
      for (const key of Object.keys(message)) if (!known.includes(key) && !r.other.includes(key)) r.other.push(key);
    });
  }

  send(data) {
    const message = JSON.parse(data);
    const s = results.sent;
    if (message.setup) s.setup = message.setup;
    const audio = message.realtimeInput?.audio;
    if (audio) {
      s.audioFrames += 1;
      s.audioBytes += atob(audio.data).length;
      if (!s.audioMimeTypes.includes(audio.mimeType)) s.audioMimeTypes.push(audio.mimeType);
      s.firstAudioAt ??= performance.now();
      s.lastAudioAt = performance.now();
    }
    super.send(data);
  }
};

// ---------------------------------------------------------------- watching the speaker
const NativeAudioContext = window.AudioContext;
window.AudioContext = class extends NativeAudioContext {
  constructor(...args) {
    super(...args);
    results.contextRates.push(this.sampleRate);
  }
};
const nativeStart = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function start(...args) {
  const buffer = this.buffer;
  const p = results.played;
  p.buffers += 1;
  if (!p.rates.includes(buffer.sampleRate)) p.rates.push(buffer.sampleRate);
  p.seconds += buffer.duration;
  // 'ended' fires when the context's clock has passed the buffer (or the SDK stopped it).
  this.addEventListener('ended', () => { p.endedSeconds += buffer.duration; });
  return nativeStart.apply(this, args);
};

// ---------------------------------------------------------------- the app, as a user writes it
let session = null;
let conversation = null;

window.talk = async function talk() {
  try {
    status('connecting');
    const app = initializeApp({ apiKey: 'firebase-key', projectId: 'demo-project', appId: '1:1:web:1' });
    const ai = getAI(app, { backend: new GoogleAIBackend() });
    const model = getLiveGenerativeModel(ai, {
      model: params.get('model') ?? 'gemini-live-2.5-flash',
      generationConfig: {
        responseModalities: [ResponseModality.AUDIO], temperature: 0, maxOutputTokens: 40,
        inputAudioTranscription: {}, outputAudioTranscription: {},
      },
      systemInstruction: 'You are a helpful voice assistant. Answer in one short sentence.',
    });
    session = await model.connect();
    status('connected');
    conversation = await startAudioConversation(session);
    status('talking');
  } catch (error) {
    results.error = String(error?.stack ?? error);
    status('error');
  }
};

window.hangUp = async function hangUp() {
  try {
    await conversation?.stop();
    await session?.close();
    status('closed');
  } catch (error) {
    results.error = String(error?.stack ?? error);
    status('error');
  }
};

document.getElementById('talk').addEventListener('click', () => window.talk());
status('ready');
