import { createWriteStream, write } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { LogSink } from '../local/log-sink.js';
import { engineMessage } from './engine.js';

/** After the container exits, how long its followed log stream may take to end. */
const LOG_DRAIN_MS = 2000;
/** A log that streamed to its end below this size is read once more to check nothing was lost. */
const VERIFY_BELOW_BYTES = 1024 * 1024;

/**
 * Follows a container's log into the attempt's log file (through {@link LogSink}'s
 * descriptor, opened for appending) from its first byte. `finish`, called once the container
 * exited, waits for the stream to end. An engine that keeps it open (podman now and then,
 * for a container that exits as the stream starts) is cut off after a moment, and the rest
 * of the log is read once, without following, past the bytes already written.
 */
export function followLog(container: Docker.Container, log: LogSink): { finish(): Promise<void> } {
  const file = createWriteStream('', { fd: log.fd, autoClose: false, flags: 'a' });
  const demux = new LogDemux();
  const abort = new AbortController();
  let ended = false;
  const piping = (async () => {
    const options = { follow: true, stdout: true, stderr: true, abortSignal: abort.signal };
    const source = await container.logs(options as { follow: true });
    await pipeline(source, demux, file);
    ended = true;
  })().catch(() => undefined);
  return {
    finish: async () => {
      await within(piping, LOG_DRAIN_MS);
      if (!ended) {
        // The engine keeps the stream open (or never answered): stop it, pass nothing more on.
        abort.abort();
        demux.destroy();
        await within(piping, 1000);
      } else if (demux.payloadBytes >= VERIFY_BELOW_BYTES) {
        return;
      }
      // Read the log once more without following and append what the stream missed: also
      // when it ended, since podman may end a followed stream early, even empty, for a
      // container that exits as the stream starts (the job-host suite saw a log come back
      // empty). Skipped for a large log that streamed to its end: it would be read twice.
      try {
        const options = { follow: false, stdout: true, stderr: true };
        const all = await within(
          container.logs({ ...options, abortSignal: AbortSignal.timeout(10_000) } as {
            follow: false;
          }),
          11_000,
        );
        if (all === undefined) throw new Error('the engine did not answer');
        const rest = demuxBuffer(all).subarray(demux.payloadBytes);
        if (rest.length > 0) await writeAll(log.fd, rest);
      } catch (err) {
        if (!ended)
          log.note(`[ion] the container's log could not be read whole: ${engineMessage(err)}`);
      }
    },
  };
}

/** `promise`'s value, or undefined once `ms` passed first. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The payloads of a whole multiplexed log, concatenated. */
function demuxBuffer(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (buf.length - offset >= 8) {
    const size = buf.readUInt32BE(offset + 4);
    const type = buf[offset];
    if (type === 1 || type === 2) parts.push(buf.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts);
}

async function writeAll(fd: number, buf: Buffer): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    done += await new Promise<number>((resolve, reject) =>
      write(fd, buf, done, buf.length - done, null, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }
}

/**
 * Splits the Engine API's multiplexed log stream (a container without a TTY) into its
 * payloads, stdout and stderr interleaved in the order they came, as one stream: each frame
 * is an 8-byte header (stream type, 3 bytes of padding, a big-endian uint32 length) followed
 * by that many bytes. Unlike `modem.demuxStream` it is a Transform, so a slow disk pushes
 * back on the engine instead of buffering a chatty module's output in memory.
 */
export class LogDemux extends Transform {
  /** Payload bytes passed on so far (what reached the log file). */
  payloadBytes = 0;
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
      if (type === 1 || type === 2) {
        this.payloadBytes += size;
        this.push(buf.subarray(offset + 8, offset + 8 + size));
      }
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
