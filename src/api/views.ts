import { posix } from 'node:path';
import type { FileRef, IonEvent } from '../core/types.js';

/** The API's view of an event: metadata both as an ordered list and as an object. */
export function eventView(event: IonEvent) {
  return {
    ...event,
    data: Object.fromEntries(event.data.map((kv) => [kv.key, kv.value])),
    metadata: event.data,
  };
}

/** The download URL of a file: its blob, named so the content type and file name follow. */
export function fileHref(file: FileRef): string {
  return `/v1/blobs/${file.sha256}?name=${encodeURIComponent(posix.basename(file.path))}`;
}
