import { finished, PassThrough, type Readable } from 'node:stream';

/**
 * An upload's body as the blob store gets it: a stream the store may destroy when it fails
 * on its own side (a full disk, an object store gone) without destroying the request. A
 * destroyed request resets the connection, so the client would see a broken socket instead
 * of the 503 it is owed (the soak saw this on a full blob disk). What the store did not read
 * is drained instead, and the answer goes out on a connection that stays usable. An error of
 * the request itself (the client went away, a body cut short) still reaches the store.
 */
export function detachedBody(source: Readable): Readable {
  const feed = new PassThrough();
  // The source can fail before the store has started to read (it opens its temp file
  // first): the error must wait in `feed.errored` for the store's pipeline, which reports it,
  // rather than be thrown as unhandled.
  feed.on('error', () => undefined);
  // An error, or an end before the whole body (a part cut short): the store gets it.
  finished(source, (err) => {
    if (err) feed.destroy(err);
  });
  source.pipe(feed);
  feed.once('close', () => {
    if (source.readableEnded || source.destroyed) return;
    source.unpipe(feed);
    source.resume();
  });
  return feed;
}
