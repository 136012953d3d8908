// Audio in and out, on one AudioContext created from a click (browsers start audio only after a gesture).
//
// Microphone: getUserMedia → MediaStreamSource → the `pcm-capture` AudioWorklet, which posts
// 16 kHz 16-bit chunks back here.
// Player: each 24 kHz chunk from the server becomes an AudioBuffer played by its own
// AudioBufferSourceNode, scheduled to start exactly where the previous one ends, so the
// reply plays without gaps however the chunks arrive. `flush()` stops everything at once
// (on `interrupted`).

const WORKLET_URL = new URL("./capture-worklet.js", import.meta.url);

export class Microphone {
  /**
   * @param {AudioContext} ctx
   * @param {(pcm: Int16Array, rms: number) => void} onChunk  called for every chunk
   */
  constructor(ctx, onChunk, { rate = 16000, chunkMs = 40 } = {}) {
    this.ctx = ctx;
    this.onChunk = onChunk;
    this.options = { targetRate: rate, chunkMs };
    this.stream = null;
    this.source = null;
    this.node = null;
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("this page needs a secure context (https:// or http://localhost) for the microphone");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      // Echo cancellation keeps the model's own voice out of the mic, so it does not interrupt itself.
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await loadWorklet(this.ctx);
    this.source = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "pcm-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], processorOptions: this.options,
    });
    this.node.port.onmessage = (event) => this.onChunk(event.data.pcm, event.data.rms);
    this.source.connect(this.node);
    // The processor writes nothing to its output; connecting it keeps the graph pulling it.
    this.node.connect(this.ctx.destination);
  }

  stop() {
    this.node?.port.postMessage("flush");
    this.source?.disconnect();
    this.node?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = this.source = this.node = null;
  }
}

const loaded = new WeakSet();
async function loadWorklet(ctx) {
  if (loaded.has(ctx)) return;
  await ctx.audioWorklet.addModule(WORKLET_URL);
  loaded.add(ctx);
}

export class Player {
  /** @param {AudioContext} ctx */
  constructor(ctx, stats) {
    this.ctx = ctx;
    this.stats = stats; // { playedSamples, queuedSamples, flushedSamples }: samples at the source rate (24 kHz)
    this.out = ctx.createGain();
    this.out.connect(ctx.destination);
    this.sources = new Set();
    this.endTime = 0; // context time where the queued audio ends
    this.leadS = 0.06; // a small jitter buffer before the first chunk of a burst
  }

  /** Queue 16-bit PCM; returns the context time it will start at. */
  play(int16, rate) {
    const samples = new Float32Array(int16.length);
    for (let i = 0; i < int16.length; i++) samples[i] = int16[i] / 0x8000;
    const buffer = this.ctx.createBuffer(1, samples.length, rate); // the context resamples to its own rate
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.out);
    const start = Math.max(this.endTime, this.ctx.currentTime + this.leadS);
    source.start(start);
    source.startedAt = start;
    this.endTime = start + buffer.duration;
    this.sources.add(source);
    this.stats.queuedSamples += samples.length;
    source.onended = () => {
      this.sources.delete(source);
      if (!source.flushed) this.stats.playedSamples += samples.length;
    };
    return start;
  }

  /** Seconds of audio still queued. */
  get pendingS() {
    return Math.max(0, this.endTime - this.ctx.currentTime);
  }

  /** Stop at once: drop everything queued (barge-in). Counts what had already been heard. */
  flush() {
    const now = this.ctx.currentTime;
    for (const source of this.sources) {
      source.flushed = true;
      const { length, sampleRate } = source.buffer;
      const heard = Math.min(length, Math.round(Math.max(0, now - source.startedAt) * sampleRate));
      this.stats.playedSamples += heard;
      this.stats.flushedSamples += length - heard;
      source.stop();
    }
    this.sources.clear();
    this.endTime = 0;
  }
}
