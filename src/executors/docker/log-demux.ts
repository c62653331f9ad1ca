import { createWriteStream, write } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import type { LogSink } from '../local/log-sink.js';
import { engineMessage } from './engine.js';

/** After the container exits, how long its log stream may take to end. */
const LOG_DRAIN_MS = 2000;
/** A log that streamed to its end below this size is read once more to check nothing was lost. */
const VERIFY_BELOW_BYTES = 1024 * 1024;
/** Reads of the whole log after the exit; podman answers some with an error while it cleans up. */
const READ_TRIES = 4;
const READ_RETRY_MS = 250;

/** The log of one container, captured into the attempt's log file. */
export interface LogCapture {
  /** Call once the container exited: waits for the stream to end, then checks it whole. */
  finish(): Promise<void>;
  /** Call when the container never started: drops the stream. */
  cancel(): void;
}

/**
 * Captures a container's output into the attempt's log file (through {@link LogSink}'s
 * descriptor, opened for appending). Call it after create and before start.
 *
 * The output comes from an attach made before the start, as `docker run` does: the engine
 * streams every byte from the first, with backpressure, and ends the stream when the
 * container exits. Following the log instead (`logs?follow=1` after the start) raced with a
 * container that exits at once: podman then answered with an error written into the stream
 * (`read /proc/<pid>/cgroup: no such process`) or an empty stream.
 *
 * `finish` then reads the whole log once without following (up to a few times, since
 * podman can refuse a read while it cleans up the container) and appends what the stream
 * missed; a log of 1 MiB or more that streamed to its end is trusted as it is. An attach the
 * engine refuses falls back to that read alone.
 */
export async function captureLog(container: Docker.Container, log: LogSink): Promise<LogCapture> {
  const file = createWriteStream('', { fd: log.fd, autoClose: false, flags: 'a' });
  const demux = new LogDemux();
  const abort = new AbortController();
  let ended = false;
  let source: NodeJS.ReadableStream | null = null;
  try {
    const options = { stream: true, stdout: true, stderr: true, abortSignal: abort.signal };
    source = await container.attach(options);
  } catch {
    // No attach: the read after the exit gets the log.
  }
  const piping =
    source === null
      ? Promise.resolve()
      : pipeline(source, demux, file)
          .then(() => {
            ended = !demux.corrupt;
          })
          .catch(() => undefined);
  const stopStream = async (): Promise<void> => {
    abort.abort();
    demux.destroy();
    (source as { destroy?: () => void } | null)?.destroy?.();
    await within(piping, 1000);
  };
  return {
    cancel: () => void stopStream(),
    finish: async () => {
      await within(piping, LOG_DRAIN_MS);
      if (!ended) await stopStream();
      else if (demux.payloadBytes >= VERIFY_BELOW_BYTES) return;
      let lastError: unknown = null;
      for (let attempt = 1; attempt <= READ_TRIES; attempt++) {
        try {
          const all = await readWholeLog(container);
          const rest = all.subarray(demux.payloadBytes);
          if (rest.length > 0) await writeAll(log.fd, rest);
          return;
        } catch (err) {
          lastError = err;
          if (attempt < READ_TRIES) await new Promise((r) => setTimeout(r, READ_RETRY_MS));
        }
      }
      if (!ended)
        log.note(`[ion] the container's log could not be read whole: ${engineMessage(lastError)}`);
    },
  };
}

/** The container's whole log (stdout and stderr payloads in order), read without following. */
async function readWholeLog(container: Docker.Container): Promise<Buffer> {
  const options = { follow: false, stdout: true, stderr: true };
  const all = await within(
    container.logs({ ...options, abortSignal: AbortSignal.timeout(10_000) } as { follow: false }),
    11_000,
  );
  if (all === undefined) throw new Error('the engine did not answer');
  const demux = new LogDemux();
  const parts: Buffer[] = [];
  demux.on('data', (chunk: Buffer) => parts.push(chunk));
  demux.end(all);
  await new Promise<void>((resolve, reject) => {
    demux.once('end', resolve);
    demux.once('error', reject);
  });
  if (demux.corrupt)
    throw new Error(`the engine sent no log but: ${all.subarray(0, 200).toString()}`);
  return Buffer.concat(parts);
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
  /**
   * The stream was not multiplexed frames (an engine that wrote an error into a stream it
   * had answered 200): nothing from there on is passed on.
   */
  corrupt = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.corrupt) return done();
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < 8) return done();
    let buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    let offset = 0;
    while (buf.length - offset >= 8) {
      if (!isFrameHeader(buf, offset)) {
        this.corrupt = true;
        this.pending = [];
        this.pendingBytes = 0;
        return done();
      }
      const size = buf.readUInt32BE(offset + 4);
      if (buf.length - offset - 8 < size) break;
      // 0 stdin (never sent here), 1 stdout, 2 stderr.
      if (buf[offset] !== 0) {
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
    if (!this.corrupt && rest.length > 8 && isFrameHeader(rest, 0) && rest[0] !== 0) {
      this.payloadBytes += rest.length - 8;
      this.push(rest.subarray(8));
    }
    done();
  }
}

/** A frame header: stream type 0, 1 or 2, then three zero bytes of padding. */
function isFrameHeader(buf: Buffer, offset: number): boolean {
  return (
    buf[offset]! <= 2 && buf[offset + 1] === 0 && buf[offset + 2] === 0 && buf[offset + 3] === 0
  );
}
