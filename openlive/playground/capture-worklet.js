// AudioWorklet processor: the microphone, down to 16 kHz mono 16-bit PCM, in chunks.
//
// Runs on the audio rendering thread. The input comes at the AudioContext's rate (usually
// 48 kHz or 44.1 kHz). Each sample is mixed to mono and low-passed (a small windowed-sinc FIR
// below the new Nyquist frequency, so speech does not alias), then the filtered signal is read
// at the output rate by linear interpolation. Every `chunkMs` the processor posts
// `{ pcm: Int16Array, rms }` to the main thread (the buffer is transferred, not copied).

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 16000, chunkMs = 40 } = options.processorOptions || {};
    this.step = sampleRate / targetRate; // input samples per output sample (`sampleRate` is a worklet global)
    // Downsampling: cut at 90% of the new Nyquist frequency. Upsampling (rare) needs no filter.
    const down = this.step > 1;
    this.taps = down ? lowPass((0.45 * targetRate) / sampleRate, 8 * Math.ceil(this.step) + 1) : new Float32Array([1]);
    this.ring = new Float32Array(this.taps.length); // the latest inputs, for the filter
    this.ringPos = 0;
    this.inCount = 0; // input samples seen so far
    this.nextOut = 0; // input position (fractional) of the next output sample
    this.prev = 0; // the previous filtered sample, for interpolation
    this.chunk = new Int16Array(Math.round((targetRate * chunkMs) / 1000));
    this.fill = 0;
    this.sumSquares = 0;
    this.port.onmessage = (event) => { if (event.data === "flush") this.flush(); };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // no input connected (yet)
    const frames = channels[0].length;
    const taps = this.taps, ring = this.ring, n = taps.length;
    for (let i = 0; i < frames; i++) {
      let x = 0;
      for (let c = 0; c < channels.length; c++) x += channels[c][i];
      ring[this.ringPos] = x / channels.length;
      this.ringPos = (this.ringPos + 1) % n;
      // Convolve: taps[0] meets the oldest sample in the ring.
      let y = 0;
      for (let k = 0, j = this.ringPos; k < n; k++, j = (j + 1) % n) y += taps[k] * ring[j];
      // Emit every output sample whose position falls between the previous input and this one.
      while (this.nextOut <= this.inCount) {
        const frac = this.nextOut - (this.inCount - 1);
        this.emit(this.prev + (y - this.prev) * frac);
        this.nextOut += this.step;
      }
      this.prev = y;
      this.inCount++;
    }
    return true;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.sumSquares += s * s;
    this.chunk[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.fill === this.chunk.length) this.flush();
  }

  flush() {
    if (this.fill === 0) return;
    const pcm = this.chunk.slice(0, this.fill);
    const rms = Math.sqrt(this.sumSquares / this.fill);
    this.port.postMessage({ pcm, rms }, [pcm.buffer]);
    this.fill = 0;
    this.sumSquares = 0;
  }
}

/** Windowed-sinc (Hamming) low-pass taps; `cutoff` is a fraction of the input rate (0.5 = Nyquist). */
function lowPass(cutoff, length) {
  const taps = new Float32Array(length);
  const mid = (length - 1) / 2;
  let sum = 0;
  for (let i = 0; i < length; i++) {
    const t = i - mid;
    const sinc = t === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * t) / (Math.PI * t);
    const window = length > 1 ? 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (length - 1)) : 1;
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < length; i++) taps[i] /= sum; // unity gain at DC
  return taps;
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
