// The Live API wire protocol (BidiGenerateContent) over a browser WebSocket, with no SDK.
//
// One JSON object per frame each way. The client sends `setup` first and waits for
// `setupComplete`; then `realtimeInput` (audio chunks), `clientContent` (typed turns) and
// `toolResponse`. The server answers with `serverContent` (modelTurn parts, transcriptions,
// interrupted, turnComplete), `toolCall`, `usageMetadata`, `goAway`, ... See
// shared/reference/live-protocol.md for the full list.

/** Base64 of raw bytes (standard alphabet, padded), in slices so huge buffers do not blow the stack. */
export function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes from base64; accepts both the standard and the URL-safe alphabet, padded or not. */
export function base64ToBytes(text) {
  let b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  while (b64.length % 4) b64 += "=";
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The WebSocket URL of this server's Live endpoint, relative to the page (so proxies with a prefix work). */
export function liveUrl(livePath, apiKey) {
  const url = new URL(livePath, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey) url.searchParams.set("key", apiKey);
  return url.toString();
}

/**
 * A Live API session. `handlers` receives the server's messages:
 *   onContent(serverContent), onToolCall(toolCall), onToolCallCancellation(ids),
 *   onUsage(usageMetadata), onGoAway(goAway), onOther(message), onClose({code, reason}),
 *   onSend(message) (every client message, after it is sent: for display and tests)
 */
export class LiveClient {
  constructor(url, handlers = {}) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.ready = false;
  }

  /** Open the socket, send `setup`, resolve with `setupComplete` (or reject if the server closes first). */
  connect(setup) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer"; // a binary frame is decoded synchronously, so order is kept
      this.ws = ws;
      const decoder = new TextDecoder();
      ws.onopen = () => this.send({ setup });
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(typeof event.data === "string" ? event.data : decoder.decode(event.data));
        } catch (err) {
          console.warn("unreadable frame", err);
          return;
        }
        if (!this.ready) {
          if (!("setupComplete" in message)) return; // as the JS SDK does: nothing counts before it
          this.ready = true;
          resolve(message.setupComplete);
          return;
        }
        this.dispatch(message);
      };
      ws.onclose = (event) => {
        const wasReady = this.ready;
        this.ready = false;
        if (!wasReady) {
          reject(new Error(`closed before setup completed (${event.code})${event.reason ? ": " + event.reason : ""}`));
        }
        this.handlers.onClose?.({ code: event.code, reason: event.reason, wasReady });
      };
      // Errors are followed by a close event, which carries the code; nothing to do here.
      ws.onerror = () => {};
    });
  }

  dispatch(message) {
    const h = this.handlers;
    let known = false;
    if (message.serverContent) { known = true; h.onContent?.(message.serverContent); }
    if (message.toolCall) { known = true; h.onToolCall?.(message.toolCall); }
    if (message.toolCallCancellation) {
      known = true;
      h.onToolCallCancellation?.(message.toolCallCancellation.ids || []);
    }
    if (message.usageMetadata) { known = true; h.onUsage?.(message.usageMetadata); }
    if (message.goAway) { known = true; h.onGoAway?.(message.goAway); }
    if (!known) h.onOther?.(message);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    this.handlers.onSend?.(message);
    return true;
  }

  /** One chunk of microphone audio: 16-bit little-endian PCM at `rate` Hz. */
  sendAudio(int16, rate = 16000) {
    const bytes = new Uint8Array(int16.buffer, int16.byteOffset, int16.byteLength);
    return this.send({ realtimeInput: { audio: { data: bytesToBase64(bytes), mimeType: `audio/pcm;rate=${rate}` } } });
  }

  /** One video frame (a JPEG from the camera or the shared screen), about one a second. */
  sendVideoFrame(bytes, mimeType = "image/jpeg") {
    return this.send({ realtimeInput: { video: { data: bytesToBase64(bytes), mimeType } } });
  }

  /** The microphone stopped: lets the server's voice activity detector close an open turn. */
  sendAudioStreamEnd() {
    return this.send({ realtimeInput: { audioStreamEnd: true } });
  }

  /** A typed user turn. Like any new client content it interrupts a reply in progress. */
  sendText(text) {
    return this.send({ clientContent: { turns: [{ role: "user", parts: [{ text }] }], turnComplete: true } });
  }

  sendToolResponse(functionResponses) {
    return this.send({ toolResponse: { functionResponses } });
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}
