// Runs on the audio rendering thread: copies the microphone's samples (first channel) into
// blocks of about 100 ms and hands each block to the page, which sends it to the server.
// It only copies, as an audio callback should: no allocation per render quantum.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = Math.round(sampleRate / 10);
    this.block = new Float32Array(this.size);
    this.fill = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let at = 0;
      while (at < channel.length) {
        const n = Math.min(channel.length - at, this.size - this.fill);
        this.block.set(channel.subarray(at, at + n), this.fill);
        this.fill += n;
        at += n;
        if (this.fill === this.size) {
          this.port.postMessage(this.block, [this.block.buffer]); // handed over, not copied
          this.block = new Float32Array(this.size);
          this.fill = 0;
        }
      }
    }
    return true; // keep running while the page holds the node
  }
}

registerProcessor("pcm-capture", PcmCapture);
