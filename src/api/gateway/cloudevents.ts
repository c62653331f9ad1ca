import type { FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import type { Blobs } from '../../app/blobs.js';
import { ValidationError, type ValidationIssue } from '../../core/errors.js';
import type { KeyValue } from '../../core/types.js';
import { capped, checkEventType, invalid, isPlainObject, scalarText, tooLarge } from './shared.js';

/** The path CloudEvents arrive on; `cloudevents` is therefore not usable as an event type here. */
export const CLOUDEVENTS_PATH = '/v1/gateway/cloudevents';

/** A CloudEvent as received: its context attributes (in order) and its data. */
export interface ReceivedCloudEvent {
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

export function binaryCloudEvent(request: FastifyRequest, limitBytes: number): ReceivedCloudEvent {
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

export function structuredCloudEvent(body: unknown): ReceivedCloudEvent {
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
export async function cloudEventPublication(
  ce: ReceivedCloudEvent,
  blobs: Blobs,
): Promise<{ type: string; data: KeyValue[]; files: { path: string; sha256: string }[] }> {
  const data: KeyValue[] = [...ce.attributes].map(([name, value]) => ({
    key: `ce_${name}`,
    value,
  }));
  const files: { path: string; sha256: string }[] = [];
  if (ce.data.kind === 'bytes') {
    const ref = await blobs.put(Readable.from(ce.data.source));
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
      const ref = await blobs.put(Readable.from([bytes]));
      files.push({ path: 'data.json', sha256: ref.sha256 });
    }
  }
  return { type: ce.attributes.get('type')!, data, files };
}
