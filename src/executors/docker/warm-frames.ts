/**
 * Splits the Engine API's multiplexed attach stream (a container without a TTY) into stdout
 * and stderr, each to its own callback: a warm container's two streams are cut at the job's
 * end mark separately, as a warm process's pipes are. Each frame is an 8-byte header (stream
 * type 1 stdout or 2 stderr, 3 bytes of padding, a big-endian uint32 length) and its payload;
 * a frame split across reads is kept until it is whole. (The cold executor's `LogDemux`
 * joins both streams into one file, so it cannot serve here.)
 */
export class FrameSplitter {
  private pending = Buffer.alloc(0);

  constructor(
    private readonly stdout: (chunk: Buffer) => void,
    private readonly stderr: (chunk: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf.length - 8 < size) break;
      const payload = buf.subarray(8, 8 + size);
      if (buf[0] === 1) this.stdout(payload);
      else if (buf[0] === 2) this.stderr(payload);
      buf = buf.subarray(8 + size);
    }
    this.pending = Buffer.from(buf);
  }
}
