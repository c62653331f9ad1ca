import { createWriteStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { LogSink } from '../local/log-sink.js';
import { engineMessage } from './engine.js';

/** After the container exits, how long its log stream may take to drain. */
const LOG_DRAIN_MS = 5000;

/**
 * Follows a container's log into the attempt's log file (through {@link LogSink}'s
 * descriptor, opened for appending) from its first byte. `finish`, called once the container
 * exited, waits for the stream to drain, and cuts it after a few seconds if the engine keeps
 * it open.
 */
export function followLog(container: Docker.Container, log: LogSink): { finish(): Promise<void> } {
  const file = createWriteStream('', { fd: log.fd, autoClose: false, flags: 'a' });
  let source: NodeJS.ReadableStream | undefined;
  const piping = (async () => {
    source = await container.logs({ follow: true, stdout: true, stderr: true });
    await pipeline(source, new LogDemux(), file);
  })().catch((err: unknown) => {
    log.note(`[ion] the container's log stream broke: ${engineMessage(err)}`);
  });
  return {
    finish: async () => {
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        piping.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), LOG_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      if (!drained) {
        (source as { destroy?: () => void } | undefined)?.destroy?.();
        await piping;
      }
    },
  };
}

/**
 * Splits the Engine API's multiplexed log stream (a container without a TTY) into its
 * payloads, stdout and stderr interleaved in the order they came, as one stream: each frame
 * is an 8-byte header (stream type, 3 bytes of padding, a big-endian uint32 length) followed
 * by that many bytes. Unlike `modem.demuxStream` it is a Transform, so a slow disk pushes
 * back on the engine instead of buffering a chatty module's output in memory.
 */
export class LogDemux extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < 8) return done();
    let buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    let offset = 0;
    while (buf.length - offset >= 8) {
      const size = buf.readUInt32BE(offset + 4);
      if (buf.length - offset - 8 < size) break;
      const type = buf[offset];
      // 0 stdin, 1 stdout, 2 stderr; other values mean the stream is not multiplexed.
      if (type === 1 || type === 2) this.push(buf.subarray(offset + 8, offset + 8 + size));
      offset += 8 + size;
    }
    buf = buf.subarray(offset);
    this.pending = buf.length === 0 ? [] : [buf];
    this.pendingBytes = buf.length;
    done();
  }

  override _flush(done: TransformCallback): void {
    // A stream cut mid-frame (the engine went away): keep what arrived of the payload.
    const rest = Buffer.concat(this.pending);
    if (rest.length > 8) this.push(rest.subarray(8));
    done();
  }
}
