// The Firebase AI Logic Web SDK (`firebase`, @firebase/ai), unmodified, against a Live API server.
//
// The SDK has no URL option: it always dials wss://firebasevertexai.googleapis.com. Its users point
// it elsewhere by mapping that host; here a WebSocket subclass installed as the global (the SDK
// looks `WebSocket` up when it connects) rewrites the scheme and host, and keeps the SDK's own
// path and ?key=. Node 20 needs --experimental-websocket for a global WebSocket; 22+ has one.
//
//   OPENLIVE_BASE_URL=https://127.0.0.1:8443 BACKEND=googleai|vertex MODEL=gemini-live-2.5-flash \
//     NODE_EXTRA_CA_CERTS=cert.pem node --experimental-websocket firebase_live.mjs
//
// Steps: a text turn (session.send), then a question answered by a function tool
// (toolCall → sendFunctionResponses → the answer); FIREBASE_PROMPTS (a JSON list) replaces them.
// Prints one JSON line with what it saw.
import { initializeApp } from 'firebase/app';
import { getAI, getLiveGenerativeModel, GoogleAIBackend, AgentPlatformBackend, ResponseModality, Schema }
  from 'firebase/ai';

const target = new URL(process.env.OPENLIVE_BASE_URL ?? 'https://127.0.0.1:8443');
const paths = [];
const Native = globalThis.WebSocket;
globalThis.WebSocket = class extends Native {
  constructor(url, ...rest) {
    const u = new URL(String(url));
    paths.push(u.pathname);
    u.protocol = target.protocol === 'http:' ? 'ws:' : 'wss:';
    u.host = target.host;
    super(u.toString(), ...rest);
  }
};

const vertex = process.env.BACKEND === 'vertex';
const app = initializeApp({ apiKey: 'firebase-key', projectId: 'demo-project', appId: '1:1:web:1' });
const ai = getAI(app, { backend: vertex ? new AgentPlatformBackend('europe-west4') : new GoogleAIBackend() });
const model = getLiveGenerativeModel(ai, {
  model: process.env.MODEL ?? 'gemini-live-2.5-flash',
  generationConfig: { responseModalities: [ResponseModality.TEXT] },
  systemInstruction: 'You are a helpful assistant.',
  tools: [{ functionDeclarations: [{
    name: 'get_current_weather', description: 'Get the current weather for a city.',
    parameters: Schema.object({ properties: { location: Schema.string({ description: 'The city' }) } }),
  }] }],
});

const result = { backend: vertex ? 'vertex' : 'googleai', steps: [] };
const deadline = (ms) => new Promise((_, reject) => setTimeout(() => reject(new Error(`no turnComplete in ${ms} ms`)), ms));

// One turn, read with next() (a `break` out of `for await` would end the session's stream).
async function turn(messages) {
  const step = { text: '', calls: [], types: [] };
  for (;;) {
    const { value, done } = await messages.next();
    if (done) throw new Error('the session ended mid-turn');
    step.types.push(value.type);
    if (value.type === 'toolCall') {
      for (const call of value.functionCalls) step.calls.push({ name: call.name, args: call.args });
      await session.sendFunctionResponses(value.functionCalls.map((call) => (
        { id: call.id, name: call.name, response: { location: call.args?.location, temperature_c: 21, sky: 'sunny' } })));
    } else if (value.type === 'serverContent') {
      for (const part of value.modelTurn?.parts ?? []) if (part.text) step.text += part.text;
      if (value.turnComplete && (step.text || !step.calls.length)) return step;
    }
  }
}

let session;
try {
  session = await model.connect();
  const messages = session.receive();
  const prompts = JSON.parse(process.env.FIREBASE_PROMPTS ?? '["Say hello to me.", "What is the weather in Paris?"]');
  for (const prompt of prompts) {
    await session.send(prompt);
    result.steps.push({ prompt, ...(await Promise.race([turn(messages), deadline(180000)])) });
  }
  result.ok = true;
} catch (error) {
  result.ok = false;
  result.error = String(error?.stack ?? error);
}
result.paths = paths;
try { await session?.close(); } catch { /* closing is best effort */ }
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
