// Video frames for the Live API: the camera (getUserMedia) or a shared screen (getDisplayMedia),
// one JPEG a second, at most 768 px on its longest side (the size the Live API recommends).

const FRAME_INTERVAL_MS = 1000;
const MAX_SIDE = 768;
const JPEG_QUALITY = 0.8;

export class FrameSource {
  /** kind: "camera" | "screen"; onFrame(Uint8Array jpeg) is called once a second; onEnded() when
   *  the browser stops the stream (the user pressed its own "stop sharing"). */
  constructor(kind, onFrame, { preview = null, onEnded = null } = {}) {
    this.kind = kind;
    this.onFrame = onFrame;
    this.onEnded = onEnded;
    this.preview = preview;
    this.stream = null;
    this.timer = null;
    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement("canvas");
  }

  async start() {
    const media = navigator.mediaDevices;
    if (!media) throw new Error("this page needs https (or localhost) to use the camera or screen");
    this.stream = this.kind === "screen"
      ? await media.getDisplayMedia({ video: true, audio: false })
      : await media.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    this.stream.getVideoTracks()[0]?.addEventListener("ended", () => { this.stop(); this.onEnded?.(); });
    this.video.srcObject = this.stream;
    await this.video.play();
    if (this.preview) { this.preview.srcObject = this.stream; this.preview.hidden = false; }
    this.grab(); // the first frame now: a question asked right away is about what is in view
    this.timer = setInterval(() => this.grab(), FRAME_INTERVAL_MS);
  }

  grab() {
    const { videoWidth: w, videoHeight: h } = this.video;
    if (!w || !h) return;
    const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
    this.canvas.width = Math.round(w * scale);
    this.canvas.height = Math.round(h * scale);
    this.canvas.getContext("2d").drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    this.canvas.toBlob(async (blob) => {
      if (blob && this.stream) this.onFrame(new Uint8Array(await blob.arrayBuffer()));
    }, "image/jpeg", JPEG_QUALITY);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    if (this.preview) { this.preview.srcObject = null; this.preview.hidden = true; }
  }
}
