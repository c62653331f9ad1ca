import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { detachedBody } from './upload-body.js';

/** Resolves when `stream` closes, whether or not it failed (`events.once` rejects on 'error'). */
const closed = (stream: NodeJS.EventEmitter) =>
  new Promise<void>((resolve) => stream.once('close', () => resolve()));

const sink = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

describe('detachedBody', () => {
  it('keeps an error of the request until the store reads, and then reports it', async () => {
    const request = new PassThrough();
    const body = detachedBody(request);
    request.destroy(new Error('Unexpected end of multipart data'));
    await closed(body); // failed before the store started to read
    await expect(pipeline(body, sink())).rejects.toThrow('Unexpected end of multipart data');
  });

  it('lets the store give up without destroying the request, and drains the rest', async () => {
    const request = new PassThrough();
    const body = detachedBody(request);
    request.write('first part');
    body.destroy(new Error('disk full')); // the store fails on its side
    await closed(body);
    expect(request.destroyed).toBe(false);
    request.end('the rest, which nobody reads');
    await new Promise((resolve) => request.once('end', resolve)); // drained to its end
    expect(request.errored).toBeNull();
  });

  it('passes the whole body through when all goes well', async () => {
    const request = new PassThrough();
    const body = detachedBody(request);
    request.end('hello');
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello');
  });
});
