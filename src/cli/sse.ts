/**
 * A Server-Sent Events parser, following the WHATWG "event stream interpretation" rules closely
 * enough for any conforming server (Ion's live stream among them): lines end in LF, CRLF or CR;
 * a blank line dispatches the block; `:` starts a comment; `data` lines join with `\n`; a field
 * without a colon has an empty value; one space after the colon is dropped; unknown fields are
 * ignored. It is fed text in arbitrary chunks, so a line (or a CRLF) may arrive split.
 */

/** One dispatched message. */
export interface SseMessage {
  /** The `event` field, `message` when the block had none. */
  event: string;
  /** The `data` lines joined with `\n`. */
  data: string;
  /** The last event id as of this message (it carries over from earlier blocks). */
  id: string;
}

export class SseParser {
  /**
   * The id to send as `Last-Event-ID` when reconnecting. It moves only when a block is
   * complete, also for a block without data (a stream's head may carry just an id), and never
   * for a block cut short by a dropped connection.
   */
  lastEventId = '';
  /** The reconnection delay the server asked for (`retry: <ms>`), if it did. */
  retryMs: number | undefined;

  private buffer = '';
  /** The previous chunk ended in CR: a LF starting the next one belongs to that line end. */
  private skipLf = false;
  private started = false;
  private eventType = '';
  private data: string[] = [];
  private idBuffer: string | undefined;

  /** Parses a chunk of text and returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.startsWith('\uFEFF')) text = text.slice(1);
    }
    if (this.skipLf && text.startsWith('\n')) text = text.slice(1);
    this.skipLf = false;
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      const message = this.line(this.buffer.slice(start, i));
      if (message !== undefined) out.push(message);
      if (c === '\r') {
        if (i + 1 === this.buffer.length) this.skipLf = true;
        else if (this.buffer[i + 1] === '\n') i += 1;
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /**
   * Forgets a partly received block (and line): call it when the connection drops, before
   * parsing a new connection's stream. `lastEventId` and `retryMs` are kept.
   */
  reset(): void {
    this.buffer = '';
    this.skipLf = false;
    this.started = false;
    this.eventType = '';
    this.data = [];
    this.idBuffer = undefined;
  }

  private line(line: string): SseMessage | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.idBuffer = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
    return undefined;
  }

  private dispatch(): SseMessage | undefined {
    if (this.idBuffer !== undefined) this.lastEventId = this.idBuffer;
    this.idBuffer = undefined;
    const data = this.data;
    const event = this.eventType === '' ? 'message' : this.eventType;
    this.data = [];
    this.eventType = '';
    if (data.length === 0) return undefined;
    return { event, data: data.join('\n'), id: this.lastEventId };
  }
}

/**
 * The messages of a byte stream (an HTTP response body), decoded as UTF-8 (a character split
 * between chunks is joined). `parser` may be passed in to read `lastEventId` afterwards.
 */
export async function* readSse(
  source: AsyncIterable<Uint8Array | string>,
  parser: SseParser = new SseParser(),
): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of source) {
    const text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    yield* parser.push(text);
  }
  yield* parser.push(decoder.decode());
}
