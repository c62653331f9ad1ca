import type { Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { Blobs } from '../../app/blobs.js';
import { IonError } from '../../core/errors.js';
import type { KeyValue } from '../../core/types.js';
import { normaliseRelativePath } from '../../handler/safe-path.js';
import { detachedBody } from '../upload-body.js';
import { invalid, scalarText, tooLarge } from './shared.js';

/** A multipart field becomes one metadata value; metadata is not meant to carry files. */
export const MAX_FIELD_BYTES = 1024 * 1024;
const MAX_FILES = 1000;
const MAX_FIELDS = 1000;
/** Multipart parser failures, mapped onto the error codes. */
function multipartError(err: unknown, limitBytes: number): unknown {
  if (err instanceof IonError) return err;
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'FST_REQ_FILE_TOO_LARGE':
      return tooLarge('a file', limitBytes);
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new IonError(
        'payload_too_large',
        `too many parts: at most ${MAX_FILES} files and ${MAX_FIELDS} fields per upload`,
      );
    case 'FST_INVALID_JSON_FIELD_ERROR':
    case 'FST_PROTO_VIOLATION':
    case 'FST_MP_PREMATURE_CLOSE':
      return invalid(`invalid multipart body: ${message}`, 'body', message);
  }
  // busboy's own errors (no boundary, truncated body) are plain Errors.
  if (err instanceof Error && code === undefined) {
    return invalid(`invalid multipart body: ${message}`, 'body', message);
  }
  return err;
}

export interface Upload {
  data: KeyValue[];
  files: { path: string; sha256: string }[];
}

/**
 * Reads a multipart body part by part: file parts are streamed to the blob store as they
 * arrive (never buffered), fields become metadata in the order sent. A file's path is its
 * filename as sent (folders kept, e.g. `scans/page1.png`), or its field name when the
 * filename is empty; paths are normalised and checked like every event file path.
 */
export async function readMultipart(
  request: FastifyRequest,
  blobs: Blobs,
  limitBytes: number,
): Promise<Upload> {
  const upload: Upload = { data: [], files: [] };
  const seen = new Set<string>();
  const parts = request.parts({
    preservePath: true,
    limits: {
      fileSize: limitBytes,
      files: MAX_FILES,
      fields: MAX_FIELDS,
      parts: MAX_FILES + MAX_FIELDS,
      fieldSize: MAX_FIELD_BYTES,
      fieldNameSize: 1024,
    },
  });
  for (;;) {
    let next: IteratorResult<Multipart>;
    try {
      next = await parts.next();
    } catch (err) {
      throw multipartError(err, limitBytes);
    }
    if (next.done === true) break;
    const part = next.value;
    if (part.type === 'field') {
      const where = `field "${part.fieldname}"`;
      if (part.fieldnameTruncated || part.valueTruncated)
        throw tooLarge(`multipart ${where}`, MAX_FIELD_BYTES);
      const text = scalarText(part.value);
      if (text === null || part.fieldname === '')
        throw invalid(
          `invalid multipart ${where}: needs a name and a string, number or boolean value`,
          `body.${part.fieldname}`,
          'must be a named string, number or boolean',
        );
      upload.data.push({ key: part.fieldname, value: text });
      continue;
    }
    const wanted = part.filename !== '' ? part.filename : part.fieldname;
    const checked = normaliseRelativePath(wanted, "the module's in/data");
    const where = `file part "${part.fieldname}"`;
    if (!checked.ok) {
      part.file.resume();
      throw invalid(`invalid ${where}: path "${wanted}" ${checked.reason}`, wanted, checked.reason);
    }
    if (seen.has(checked.path)) {
      part.file.resume();
      throw invalid(`invalid ${where}: path "${checked.path}" is sent twice`, wanted, 'duplicate');
    }
    seen.add(checked.path);
    // Past the limit busboy would quietly truncate the file: fail its stream instead, so the
    // blob store discards the partial upload.
    part.file.once('limit', () =>
      part.file.destroy(tooLarge(`file "${checked.path}"`, limitBytes)),
    );
    let sha256: string;
    try {
      ({ sha256 } = await blobs.put(detachedBody(part.file)));
    } catch (err) {
      if (part.file.truncated) throw tooLarge(`file "${checked.path}"`, limitBytes);
      throw multipartError(err, limitBytes);
    }
    if (part.file.truncated) throw tooLarge(`file "${checked.path}"`, limitBytes);
    upload.files.push({ path: checked.path, sha256 });
  }
  return upload;
}
