import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * A run's log file, written by the child itself: {@link fd} is handed to the child as its
 * stdout and stderr, so no output passes through Ion's process (no pipes, no sockets, no
 * stream copies on the event loop). The file is opened in append mode (`O_APPEND`), so the
 * child's writes and Ion's own notes always land at the end, whoever writes.
 *
 * The tail is read back from the file once the run is over: the last `tailBytes` bytes
 * written during this run (never bytes of an earlier attempt that were already in the file).
 */
export class LogSink {
  /** Ion's notes are written one after the other, in order; errors are swallowed (best effort). */
  private writes: Promise<void> = Promise.resolve();
  /** The notes, kept in memory as the tail of last resort if the file cannot be read back. */
  private readonly notes: Buffer[] = [];
  private tailText = '';
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    private readonly startSize: number,
    private readonly tailBytes: number,
  ) {}

  /** Opens (creates, with its parent directories) `path` for appending and reading. */
  static async open(path: string, tailBytes: number): Promise<LogSink> {
    let handle: FileHandle;
    try {
      // 'a+': O_APPEND for the writes, readable so that the tail can be read back with pread.
      handle = await open(path, 'a+');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      await mkdir(dirname(path), { recursive: true });
      handle = await open(path, 'a+');
    }
    try {
      const { size } = await handle.stat();
      return new LogSink(handle, size, tailBytes);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** The descriptor to pass as the child's stdout and stderr. Valid until {@link close}. */
  get fd(): number {
    return this.handle.fd;
  }

  /**
   * Appends a line of Ion's own, on a line of its own (a line break first when the file does
   * not end with one). Queued: it may run while the child still writes.
   */
  note(line: string): void {
    this.writes = this.writes.then(() => this.append(line)).catch(() => undefined);
  }

  private async append(line: string): Promise<void> {
    const { size } = await this.handle.stat();
    let needsBreak = false;
    if (size > this.startSize) {
      const last = Buffer.alloc(1);
      const { bytesRead } = await this.handle.read(last, 0, 1, size - 1);
      needsBreak = bytesRead === 1 && last[0] !== 0x0a;
    }
    const chunk = Buffer.from(`${needsBreak ? '\n' : ''}${line}\n`);
    this.notes.push(chunk);
    await this.handle.appendFile(chunk);
  }

  /**
   * Waits for the queued notes, reads the tail back from the file and closes it. Call once
   * the child (and its process group) is gone. Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    await this.writes;
    try {
      const { size } = await this.handle.stat();
      const from = Math.max(this.startSize, size - this.tailBytes);
      const bytes = Buffer.alloc(size - from);
      const { bytesRead } = await this.handle.read(bytes, 0, bytes.length, from);
      this.tailText = decodeTail(bytes.subarray(0, bytesRead), from > this.startSize);
    } catch {
      // The file cannot be read back (it was removed or the disk failed): keep Ion's notes.
      const notes = Buffer.concat(this.notes);
      const cut = notes.length > this.tailBytes;
      this.tailText = decodeTail(cut ? notes.subarray(notes.length - this.tailBytes) : notes, cut);
    } finally {
      await this.handle.close().catch(() => undefined);
    }
  }

  /** The tail read by {@link close}: valid UTF-8, at most `tailBytes` bytes. Empty before close. */
  tail(): string {
    return this.tailText;
  }
}

/** Decodes the tail; when it was cut, a character split at its start is dropped, not mangled. */
function decodeTail(bytes: Buffer, cut: boolean): string {
  let skip = 0;
  if (cut) {
    while (skip < 3 && skip < bytes.length && ((bytes[skip] ?? 0) & 0xc0) === 0x80) skip++;
  }
  return bytes.subarray(skip).toString('utf8');
}

export function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
