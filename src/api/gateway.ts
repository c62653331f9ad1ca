import multipart, { type Multipart } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import type { Control } from '../app/control.js';
import { IonError, ValidationError, type ValidationIssue } from '../core/errors.js';
import { EVENT_TYPE } from '../core/pipeline.js';
import type { KeyValue } from '../core/types.js';
import { isReservedEventType, reservedTypeMessage } from '../core/trace-settled.js';
import { normaliseRelativePath } from '../handler/safe-path.js';
import { errorBodySchema } from './errors.js';
import type { ServerDeps } from './server.js';

declare module './server.js' {
  interface ServerDeps {
    /**
     * The largest file one gateway upload may carry (a multipart file part, or the data of
     * a binary-mode CloudEvent). Default {@link DEFAULT_GATEWAY_MAX_FILE_BYTES}.
     */
    gatewayMaxFileBytes?: number;
  }
}

/** 10 GiB: large enough for any upload Ion is meant for, small enough to stop a runaway one. */
export const DEFAULT_GATEWAY_MAX_FILE_BYTES = 10 * 1024 ** 3;
/** A multipart field becomes one metadata value; metadata is not meant to carry files. */
const MAX_FIELD_BYTES = 1024 * 1024;
const MAX_FILES = 1000;
const MAX_FIELDS = 1000;
/** The path CloudEvents arrive on; `cloudevents` is therefore not usable as an event type here. */
export const CLOUDEVENTS_PATH = '/v1/gateway/cloudevents';

const publishedSchema = {
  type: 'object',
  properties: {
    eventId: { type: 'string' },
    correlationId: { type: 'string' },
    created: { type: 'boolean' },
  },
} as const;
const responses = {
  200: publishedSchema,
  201: publishedSchema,
  400: errorBodySchema,
  409: errorBodySchema,
  413: errorBodySchema,
  415: errorBodySchema,
  503: errorBodySchema,
} as const;

/** `type/subtype` of the request body, lower case, without parameters; '' when absent. */
function mediaTypeOf(request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

function tooLarge(what: string, limitBytes: number): IonError {
  return new IonError('payload_too_large', `${what} is larger than the ${limitBytes}-byte limit`);
}

function invalid(message: string, path: string, issue: string): ValidationError {
  return new ValidationError(message, [{ path, message: issue }]);
}

function checkEventType(type: string, where: string): void {
  if (!EVENT_TYPE.test(type) || type.length > 200) {
    throw invalid(
      `invalid event type "${type}" in ${where}: must be 1-200 characters of dot-separated words of letters, digits, "_" or "-"`,
      where,
      'invalid event type',
    );
  }
  if (isReservedEventType(type)) {
    throw invalid(
      `invalid event type in ${where}: ${reservedTypeMessage(type)}`,
      where,
      'reserved event type',
    );
  }
}

/** A metadata value: strings as they are, numbers and booleans as their JSON text; else null. */
function scalarText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A JSON gateway body: an object whose values are strings, numbers or booleans. */
function metadataFromBody(body: unknown): KeyValue[] {
  if (!isPlainObject(body)) {
    throw invalid(
      'invalid body: the JSON body must be an object of metadata, e.g. {"customer": "acme"}',
      'body',
      'must be an object',
    );
  }
  const data: KeyValue[] = [];
  const issues: ValidationIssue[] = [];
  for (const [key, value] of Object.entries(body)) {
    const text = scalarText(value);
    if (key === '') issues.push({ path: 'body', message: 'metadata keys must not be empty' });
    else if (text === null)
      issues.push({ path: `body.${key}`, message: 'must be a string, number or boolean' });
    else data.push({ key, value: text });
  }
  if (issues.length > 0) {
    const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
    throw new ValidationError(`invalid body:\n${lines}`, issues);
  }
  return data;
}

function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const key = request.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || key.length === 0 || key.length > 256) {
    throw invalid(
      'invalid Idempotency-Key header: give it once, 1-256 characters',
      'headers.idempotency-key',
      'must be 1-256 characters',
    );
  }
  return key;
}

/** Counts the bytes of an upload and fails it once they pass `limitBytes`. */
async function* capped(
  source: AsyncIterable<Uint8Array>,
  limitBytes: number,
  what: string,
): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > limitBytes) throw tooLarge(what, limitBytes);
    yield chunk;
  }
}

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

interface Upload {
  data: KeyValue[];
  files: { path: string; sha256: string }[];
}

/**
 * Reads a multipart body part by part: file parts are streamed to the blob store as they
 * arrive (never buffered), fields become metadata in the order sent. A file's path is its
 * filename as sent (folders kept, e.g. `scans/page1.png`), or its field name when the
 * filename is empty; paths are normalised and checked like every event file path.
 */
async function readMultipart(
  request: FastifyRequest,
  control: Control,
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
      ({ sha256 } = await control.putBlob(part.file));
    } catch (err) {
      if (part.file.truncated) throw tooLarge(`file "${checked.path}"`, limitBytes);
      throw multipartError(err, limitBytes);
    }
    if (part.file.truncated) throw tooLarge(`file "${checked.path}"`, limitBytes);
    upload.files.push({ path: checked.path, sha256 });
  }
  return upload;
}

/** A CloudEvent as received: its context attributes (in order) and its data. */
interface ReceivedCloudEvent {
  attributes: Map<string, string>;
  data:
    | { kind: 'none' }
    | { kind: 'json'; value: unknown }
    | { kind: 'bytes'; source: AsyncIterable<Uint8Array> };
}

const REQUIRED_ATTRIBUTES = ['specversion', 'id', 'source', 'type'] as const;
const ATTRIBUTE_NAME = /^[a-z0-9]{1,64}$/;

function checkRequiredAttributes(attributes: Map<string, string>, mode: 'binary' | 'structured') {
  const name = (a: string) => (mode === 'binary' ? `ce-${a} header` : `"${a}" attribute`);
  const missing = REQUIRED_ATTRIBUTES.filter((a) => (attributes.get(a) ?? '') === '');
  if (missing.length > 0) {
    throw new ValidationError(
      `invalid CloudEvent (${mode} mode): missing the ${missing.map(name).join(', ')}`,
      missing.map((a) => ({
        path: mode === 'binary' ? `headers.ce-${a}` : a,
        message: 'required',
      })),
    );
  }
  const specversion = attributes.get('specversion');
  if (specversion !== '1.0') {
    throw invalid(
      `invalid CloudEvent: specversion "${specversion}" is not supported; Ion accepts 1.0`,
      mode === 'binary' ? 'headers.ce-specversion' : 'specversion',
      'must be 1.0',
    );
  }
  checkEventType(attributes.get('type')!, mode === 'binary' ? 'headers.ce-type' : 'type');
}

/** Header values are percent-encoded by the HTTP binding (§3.1.3.2). */
function decodeHeaderValue(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function binaryCloudEvent(request: FastifyRequest, limitBytes: number): ReceivedCloudEvent {
  const attributes = new Map<string, string>();
  for (const [header, value] of Object.entries(request.headers)) {
    if (!header.startsWith('ce-') || value === undefined) continue;
    const name = header.slice(3);
    if (!ATTRIBUTE_NAME.test(name))
      throw invalid(`invalid CloudEvent header "${header}"`, `headers.${header}`, 'bad name');
    if (Array.isArray(value))
      throw invalid(`CloudEvent header "${header}" is sent twice`, `headers.${header}`, 'twice');
    attributes.set(name, decodeHeaderValue(value));
  }
  checkRequiredAttributes(attributes, 'binary');
  const contentType = request.headers['content-type'];
  if (contentType !== undefined) attributes.set('datacontenttype', contentType);
  const body = request.body;
  if (body === undefined || body === null) return { attributes, data: { kind: 'none' } };
  if (body instanceof Readable) {
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limitBytes)
      throw tooLarge('the CloudEvent data', limitBytes);
    return {
      attributes,
      data: { kind: 'bytes', source: capped(body, limitBytes, 'the CloudEvent data') },
    };
  }
  return { attributes, data: { kind: 'json', value: body } };
}

function structuredCloudEvent(body: unknown): ReceivedCloudEvent {
  if (!isPlainObject(body))
    throw invalid('invalid CloudEvent: the body must be a JSON object', 'body', 'not an object');
  const attributes = new Map<string, string>();
  const issues: ValidationIssue[] = [];
  for (const [name, value] of Object.entries(body)) {
    if (name === 'data' || name === 'data_base64' || value === null) continue;
    const text = scalarText(value);
    if (!ATTRIBUTE_NAME.test(name)) issues.push({ path: name, message: 'invalid attribute name' });
    else if (text === null)
      issues.push({ path: name, message: 'must be a string, number or boolean' });
    else attributes.set(name, text);
  }
  if (issues.length > 0) {
    const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
    throw new ValidationError(`invalid CloudEvent:\n${lines}`, issues);
  }
  checkRequiredAttributes(attributes, 'structured');
  if (body.data !== undefined && body.data_base64 !== undefined)
    throw invalid(
      'invalid CloudEvent: "data" and "data_base64" are exclusive',
      'data_base64',
      'exclusive with data',
    );
  if (body.data_base64 !== undefined && body.data_base64 !== null) {
    if (typeof body.data_base64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(body.data_base64))
      throw invalid('invalid CloudEvent: data_base64 is not base64', 'data_base64', 'not base64');
    const bytes = Buffer.from(body.data_base64, 'base64');
    return { attributes, data: { kind: 'bytes', source: Readable.from([bytes]) } };
  }
  if (body.data === undefined || body.data === null) return { attributes, data: { kind: 'none' } };
  if (typeof body.data === 'string') {
    // A JSON string as data is text (e.g. datacontenttype text/plain): kept as it is.
    return {
      attributes,
      data: { kind: 'bytes', source: Readable.from([Buffer.from(body.data, 'utf8')]) },
    };
  }
  return { attributes, data: { kind: 'json', value: body.data } };
}

/**
 * Maps a CloudEvent onto an Ion publication. Metadata: every context attribute as
 * `ce_<name>` (in the order received), then the fields of a JSON object data whose values
 * are strings, numbers or booleans. Data that is not such a flat object (or that has a field
 * clashing with a `ce_` key) is kept whole as the file `data.json`; binary or text data
 * becomes the file `data`.
 */
async function cloudEventPublication(
  ce: ReceivedCloudEvent,
  control: Control,
): Promise<{ type: string; data: KeyValue[]; files: { path: string; sha256: string }[] }> {
  const data: KeyValue[] = [...ce.attributes].map(([name, value]) => ({
    key: `ce_${name}`,
    value,
  }));
  const files: { path: string; sha256: string }[] = [];
  if (ce.data.kind === 'bytes') {
    const ref = await control.putBlob(Readable.from(ce.data.source));
    if (ref.size > 0) files.push({ path: 'data', sha256: ref.sha256 });
  } else if (ce.data.kind === 'json') {
    const value = ce.data.value;
    let keepWhole = true;
    if (isPlainObject(value)) {
      keepWhole = false;
      const taken = new Set(data.map((kv) => kv.key));
      for (const [key, field] of Object.entries(value)) {
        const text = scalarText(field);
        if (text === null || key === '' || taken.has(key)) keepWhole = true;
        else data.push({ key, value: text });
      }
    }
    if (keepWhole) {
      const bytes = Buffer.from(JSON.stringify(value), 'utf8');
      const ref = await control.putBlob(Readable.from([bytes]));
      files.push({ path: 'data.json', sha256: ref.sha256 });
    }
  }
  return { type: ce.attributes.get('type')!, data, files };
}

async function reply201(
  reply: FastifyReply,
  published: { event: { eventId: string; correlationId: string }; created: boolean },
) {
  const { event, created } = published;
  return reply
    .status(created ? 201 : 200)
    .send({ eventId: event.eventId, correlationId: event.correlationId, created });
}

/**
 * The HTTP gateway: `POST /v1/gateway/:eventType` turns a JSON or multipart request into a
 * root event, and `POST /v1/gateway/cloudevents` accepts CloudEvents 1.0 in binary and
 * structured mode. Each is registered in a scope of its own, so its body parsers
 * (multipart; raw streams for CloudEvent data) apply to it alone.
 */
export function registerGateway(app: FastifyInstance, deps: ServerDeps): void {
  const { control } = deps;
  const limitBytes = deps.gatewayMaxFileBytes ?? DEFAULT_GATEWAY_MAX_FILE_BYTES;

  void app.register(async (scope) => {
    await scope.register(multipart, { throwFileSizeLimit: true });
    scope.post('/v1/gateway/:eventType', {
      schema: {
        params: {
          type: 'object',
          required: ['eventType'],
          properties: { eventType: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: responses,
      },
      handler: async (request, reply) => {
        const { eventType } = request.params as { eventType: string };
        checkEventType(eventType, 'the path');
        if (request.headers['ce-specversion'] !== undefined) {
          throw invalid(
            `a CloudEvent must be sent to POST ${CLOUDEVENTS_PATH}, where its type comes from ce-type`,
            'headers.ce-specversion',
            'CloudEvents go to the cloudevents route',
          );
        }
        const idempotencyKey = idempotencyKeyOf(request);
        const mediaType = mediaTypeOf(request);
        let upload: Upload;
        if (request.isMultipart()) {
          upload = await readMultipart(request, control, limitBytes);
        } else if (mediaType === 'application/json') {
          // JSON bodies keep the server's bodyLimit (the Fastify parser applies it).
          upload = { data: metadataFromBody(request.body), files: [] };
        } else if (mediaType === '' && request.body === undefined) {
          upload = { data: [], files: [] };
        } else {
          throw new IonError(
            'unsupported_media_type',
            `the gateway accepts application/json (metadata) or multipart/form-data (files and metadata), not ${mediaType}`,
          );
        }
        const published = await control.publish({
          type: eventType,
          data: upload.data,
          files: upload.files,
          ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        });
        return reply201(reply, published);
      },
    });
  });

  void app.register((scope, _options, done) => {
    // Structured mode is JSON under its own media type; batched mode is refused below.
    scope.addContentTypeParser(
      ['application/cloudevents+json', 'application/cloudevents-batch+json'],
      { parseAs: 'string' },
      scope.getDefaultJsonParser('error', 'error'),
    );
    // Binary mode: any other data arrives as a stream and goes to the blob store as it is.
    scope.removeContentTypeParser('text/plain');
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post(CLOUDEVENTS_PATH, {
      schema: { response: responses },
      handler: async (request, reply) => {
        const mediaType = mediaTypeOf(request);
        if (mediaType === 'application/cloudevents-batch+json') {
          throw new IonError(
            'unsupported_media_type',
            'batched CloudEvents are not accepted; send one event per request',
          );
        }
        const ce =
          mediaType === 'application/cloudevents+json'
            ? structuredCloudEvent(request.body)
            : binaryCloudEvent(request, limitBytes);
        const publication = await cloudEventPublication(ce, control);
        const source = ce.attributes.get('source')!;
        const id = ce.attributes.get('id')!;
        // A redelivered CloudEvent (same source and id) is the same root event.
        const published = await control.publish({
          ...publication,
          idempotencyKey: `cloudevent:${JSON.stringify([source, id])}`,
        });
        return reply201(reply, published);
      },
    });
    done();
  });
}
