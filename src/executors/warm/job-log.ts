import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * One job's log file, fed by Ion: a warm process's stdout and stderr are pipes that outlive
 * the job, so their bytes pass through Ion, which appends them to the log of the job in
 * flight. Appends and Ion's notes are queued in order; the tail is kept in memory.
 */
export class JobLog {
  private writes: Promise<void> = Promise.resolve();
  private tailBuf = Buffer.alloc(0);
  private lastByte = 0x0a;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    private readonly tailBytes: number,
  ) {}

  /** Opens (creates, with its parent directories) `path` for appending. */
  static async open(path: string, tailBytes: number): Promise<JobLog> {
    await mkdir(dirname(path), { recursive: true });
    return new JobLog(await open(path, 'a'), tailBytes);
  }

  /** Appends bytes of the module's output. */
  write(chunk: Buffer): void {
    if (chunk.length === 0 || this.closing !== undefined) return;
    this.keep(chunk);
    this.writes = this.writes.then(() => this.handle.appendFile(chunk)).catch(() => undefined);
  }

  /** Appends a line of Ion's own, on a line of its own. */
  note(line: string): void {
    this.write(Buffer.from(`${this.lastByte === 0x0a ? '' : '\n'}${line}\n`));
  }

  private keep(chunk: Buffer): void {
    this.lastByte = chunk[chunk.length - 1] ?? this.lastByte;
    const joined = Buffer.concat([this.tailBuf, chunk]);
    this.tailBuf =
      joined.length > this.tailBytes ? joined.subarray(joined.length - this.tailBytes) : joined;
  }

  /** The last `tailBytes` bytes written, as UTF-8 (a character cut at the start is dropped). */
  tail(): string {
    let skip = 0;
    while (skip < 3 && ((this.tailBuf[skip] ?? 0) & 0xc0) === 0x80) skip++;
    return this.tailBuf.subarray(skip).toString('utf8');
  }

  /** Waits for the queued writes and closes the file. Idempotent; never rejects. */
  close(): Promise<void> {
    this.closing ??= this.writes.then(() => this.handle.close()).catch(() => undefined);
    return this.closing;
  }
}

/**
 * One output stream (stdout or stderr) of a warm process, split at the job's end mark:
 * bytes before the mark go to the job's log, bytes after it to `outside` (output between
 * jobs). A mark split across two reads is still found: up to `mark.length - 1` bytes are
 * held back until the next read or {@link flush}.
 */
export class MarkedStream {
  private carry = Buffer.alloc(0);
  private mark: Buffer | null = null;
  private log: JobLog | null = null;
  /** The job's mark was seen on this stream: the job's output on it is complete. */
  marked = true;

  constructor(private readonly outside: (chunk: Buffer) => void) {}

  /** A job starts: its output goes to `log` until `mark`. */
  begin(log: JobLog, mark: Buffer): void {
    this.flush();
    this.log = log;
    this.mark = mark;
    this.marked = false;
  }

  push(chunk: Buffer): void {
    if (this.log === null || this.mark === null || this.marked) {
      this.outside(chunk);
      return;
    }
    const bytes = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    const at = bytes.indexOf(this.mark);
    if (at >= 0) {
      this.log.write(bytes.subarray(0, at));
      this.carry = Buffer.alloc(0);
      this.marked = true;
      const after = bytes.subarray(at + this.mark.length);
      if (after.length > 0) this.outside(after);
      return;
    }
    const hold = Math.min(bytes.length, this.mark.length - 1);
    this.log.write(bytes.subarray(0, bytes.length - hold));
    this.carry = Buffer.from(bytes.subarray(bytes.length - hold));
  }

  /** The job is over (or the process gone): held-back bytes go to the job's log. */
  flush(): void {
    if (this.carry.length > 0) {
      if (this.log !== null && !this.marked) this.log.write(this.carry);
      else this.outside(this.carry);
    }
    this.carry = Buffer.alloc(0);
    this.log = null;
    this.mark = null;
    this.marked = true;
  }
}
