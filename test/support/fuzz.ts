/**
 * Building blocks of the API fuzz test (test/api/fuzz.test.ts): a seeded pseudo-random
 * generator, random and schema-shaped JSON, malformed bodies, hostile path and query values,
 * the route list read from a running server, and the check of the one error format.
 */
import { ERROR_CODES } from '../../src/core/errors.js';
import { HTTP_STATUS } from '../../src/api/errors.js';

/** sfc32: small, fast, and the same sequence for the same seed on every platform. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.next();
  }

  /** A float in [0, 1). */
  next(): number {
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)]!;
  }

  /** A 32-bit seed for a child generator, so one case can be replayed on its own. */
  fork(): number {
    return this.int(2 ** 32);
  }
}

const CHARSETS = [
  'abcdefghijklmnopqrstuvwxyz',
  'ABCxyz0123456789-_.',
  ' \t\r\n"\\/\'`<>{}[]():;,=&?#%+*!@$^|~',
  'éøßñ日本語中文한국어Ωπ∑✓',
  '\u0000\u0001\u001f\u007f\u200b\u202e\ufeff\uffff',
  '😀🚀👩‍👩‍👧𝔘',
];

export function randomString(rng: Rng, maxLength = 40): string {
  const length = rng.chance(0.1) ? 0 : 1 + rng.int(maxLength);
  let out = '';
  for (let i = 0; i < length; i++) {
    const set = [...rng.pick(CHARSETS)];
    out += rng.pick(set);
  }
  if (rng.chance(0.05)) out += '\ud800'; // a lone surrogate
  return out;
}

/** A string whose content is a trap for a parser or a store (numbers, paths, markup, ...). */
export function nastyString(rng: Rng): string {
  return rng.pick([
    '',
    ' ',
    '0',
    '-1',
    '1e308',
    'NaN',
    'Infinity',
    'null',
    'true',
    'undefined',
    '__proto__',
    'constructor',
    '../../../../etc/passwd',
    '..\\..\\windows',
    '/absolute/path',
    'a/../../b',
    '%00',
    '\u0000',
    '<script>alert(1)</script>',
    "' OR 1=1 --",
    '${jndi:ldap://x}',
    '{{7*7}}',
    'x'.repeat(1 + rng.int(5000)),
    '日本語'.repeat(1 + rng.int(300)),
    '\ud800',
    randomString(rng, 80),
  ]);
}

export function randomNumber(rng: Rng): number {
  return rng.pick([
    0,
    -0,
    1,
    -1,
    1e308,
    -1e308,
    5e-324,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 2,
    2 ** 31,
    -(2 ** 63),
    0.1,
    rng.next() * 1e6,
    rng.int(1000),
  ]);
}

/** Any JSON value: nested objects and arrays, strings of every kind, extreme numbers. */
export function randomJson(rng: Rng, depth = 0): unknown {
  const kinds = depth > 4 ? 5 : 7;
  switch (rng.int(kinds)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return randomNumber(rng);
    case 3:
      return randomString(rng);
    case 4:
      return nastyString(rng);
    case 5: {
      const length = rng.int(6);
      return Array.from({ length }, () => randomJson(rng, depth + 1));
    }
    default: {
      const out: Record<string, unknown> = {};
      const count = rng.int(6);
      for (let i = 0; i < count; i++) {
        const key = rng.chance(0.7) ? randomString(rng, 12) : nastyString(rng).slice(0, 64);
        out[key] = randomJson(rng, depth + 1);
      }
      return out;
    }
  }
}

/** A JSON schema as far as the generator reads it. */
export interface Schema {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

function hex(rng: Rng, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += '0123456789abcdef'[rng.int(16)];
  return out;
}

function stringFor(rng: Rng, schema: Schema): string {
  if (schema.pattern === '^[0-9a-f]{64}$') return hex(rng, 64);
  const min = schema.minLength ?? 0;
  const max = Math.min(schema.maxLength ?? 40, 60);
  const word = rng.chance(0.6)
    ? rng.pick(['file.uploaded', 'part.ready', 'a', 'fuzz', 'x-1', 'doc.v2', 'abc_def'])
    : randomString(rng, max);
  const padded = word.length < min ? word + 'x'.repeat(min - word.length) : word;
  return [...padded].slice(0, Math.max(max, min)).join('');
}

/** A value that satisfies `schema` as far as the generator understands it (so handlers run). */
export function fromSchema(rng: Rng, schema: Schema | undefined, depth = 0): unknown {
  if (schema === undefined || depth > 5) return randomJson(rng, 4);
  if (schema.const !== undefined) return schema.const;
  if (schema.enum !== undefined && schema.enum.length > 0) return rng.pick(schema.enum);
  const alternatives = schema.oneOf ?? schema.anyOf;
  if (alternatives !== undefined && alternatives.length > 0)
    return fromSchema(rng, rng.pick(alternatives), depth + 1);
  const types = Array.isArray(schema.type)
    ? schema.type
    : schema.type === undefined
      ? [schema.properties === undefined ? 'any' : 'object']
      : [schema.type];
  const type = rng.pick(types);
  switch (type) {
    case 'null':
      return null;
    case 'boolean':
      return rng.chance(0.5);
    case 'integer': {
      const min = schema.minimum ?? 0;
      const max = Math.min(schema.maximum ?? min + 100, min + 10_000);
      return min + rng.int(max - min + 1);
    }
    case 'number':
      return rng.next() * 100;
    case 'string':
      return stringFor(rng, schema);
    case 'array': {
      const min = schema.minItems ?? 0;
      const length = min + rng.int(Math.min(schema.maxItems ?? min + 3, min + 3) - min + 1);
      return Array.from({ length }, () => fromSchema(rng, schema.items, depth + 1));
    }
    case 'object': {
      const out: Record<string, unknown> = {};
      const required = new Set(schema.required ?? []);
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        if (required.has(key) || rng.chance(0.5)) out[key] = fromSchema(rng, sub, depth + 1);
      }
      const extra = schema.additionalProperties;
      if (typeof extra === 'object' && rng.chance(0.5)) {
        for (let i = rng.int(4); i > 0; i--)
          out[stringFor(rng, {})] = fromSchema(rng, extra, depth + 1);
      } else if (schema.properties === undefined && extra === undefined) {
        for (let i = rng.int(4); i > 0; i--)
          out[randomString(rng, 10)] = randomJson(rng, depth + 1);
      }
      return out;
    }
    default:
      return randomJson(rng, depth);
  }
}

/** A schema-shaped value with one thing broken: a field dropped, retyped or added. */
export function mutate(rng: Rng, value: unknown, depth = 0): unknown {
  if (typeof value !== 'object' || value === null || depth > 4 || rng.chance(0.2))
    return rng.chance(0.5) ? randomJson(rng, 3) : nastyString(rng);
  if (Array.isArray(value)) {
    const copy = [...(value as unknown[])];
    if (copy.length > 0 && rng.chance(0.7)) {
      const i = rng.int(copy.length);
      copy[i] = mutate(rng, copy[i], depth + 1);
    } else copy.push(randomJson(rng, 3));
    return copy;
  }
  const copy = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const action = keys.length === 0 ? 2 : rng.int(3);
  if (action === 0) delete copy[rng.pick(keys)];
  else if (action === 1) {
    const key = rng.pick(keys);
    copy[key] = mutate(rng, copy[key], depth + 1);
  } else copy[rng.chance(0.2) ? '__proto__' : randomString(rng, 10)] = randomJson(rng, 3);
  return copy;
}

/** JSON text that no JSON parser accepts (or only a lax one would). */
export function malformedJson(rng: Rng): string {
  const valid = JSON.stringify({ a: randomJson(rng, 2), b: [1, 2, { c: 'd' }] });
  return rng.pick([
    '{"a":',
    '{',
    '[',
    '}',
    '{"a": 1,}',
    '[1, 2, ]',
    "{'a': 1}",
    '{a: 1}',
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": undefined}',
    '{"a": 01}',
    '{"a": 1}{"b": 2}',
    '{"a": "\\u12"}',
    '{"a": "\u0000 raw control"}',
    '"unterminated',
    'nul',
    'tru',
    '-',
    '1e',
    '\ufeff{"a": 1}',
    '// comment\n{}',
    '{"__proto__": {"polluted": true}}',
    '{"constructor": {"prototype": {"polluted": true}}}',
    '['.repeat(5000) + ']'.repeat(4999),
    '{"a":'.repeat(2000),
    valid.slice(0, 1 + rng.int(Math.max(1, valid.length - 1))),
    valid.replace(/"/g, ''),
    '\u00ff\u00fe garbage',
  ]);
}

/** A path parameter value: plausible, or hostile to the router, the decoder or a store. */
export function pathValue(rng: Rng, schema: Schema | undefined): string {
  const plausible = () => encode(String(fromSchema(rng, schema ?? { type: 'string' })));
  return rng.pick([
    plausible,
    plausible,
    () => 'x'.repeat(201), // above maxLength 200
    () => 'y'.repeat(499),
    () => 'z'.repeat(600), // above the router's maxParamLength
    () => '..%2f..%2f..%2fetc%2fpasswd',
    () => '..%2F..',
    () => '%2e%2e',
    () => '..',
    () => '.',
    () => '%00',
    () => 'a%00b',
    () => '%E0',
    () => '%E0%A4%A',
    () => '%',
    () => '%zz',
    () => '%C0%AF',
    () => '%ED%A0%80', // an encoded lone surrogate
    () => encodeURIComponent('日本語🚀'),
    () => '日本語',
    () => encode(nastyString(rng).slice(0, 300)),
    () => '%20',
    () => '+',
    () => '%2F',
    () => 'a;b=c',
    () => hex(rng, 64),
    () => hex(rng, 63) + 'G',
    () => encode(randomString(rng, 30)),
  ])();
}

/**
 * encodeURIComponent that never throws: a lone surrogate (which it refuses) is sent as the
 * invalid UTF-8 bytes %ED%A0%80, one more malformed input for the server.
 */
export function encode(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return text.replace(/[\s\S]/gu, (ch) => {
      try {
        return encodeURIComponent(ch);
      } catch {
        return '%ED%A0%80';
      }
    });
  }
}

function encodeQueryValue(rng: Rng, value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined');
  return rng.chance(0.9) ? encode(text) : text.replace(/[#\s]/g, '');
}

/** A query string: known keys with right and wrong values, unknown and repeated keys. */
export function queryString(rng: Rng, known: Record<string, Schema>): string {
  const names = Object.keys(known);
  const parts: string[] = [];
  // Unknown keys are refused before the handler runs: some cases send known keys only.
  const onlyKnown = names.length > 0 && rng.chance(0.4);
  const count = onlyKnown ? 1 + rng.int(3) : rng.int(4);
  for (let i = 0; i < count; i++) {
    const kind = onlyKnown ? rng.int(6) : rng.int(10);
    if (kind <= 1 && names.length > 0) {
      const name = rng.pick(names);
      parts.push(`${name}=${encodeQueryValue(rng, fromSchema(rng, known[name]))}`);
    } else if (kind === 2 && names.length > 0) {
      const name = rng.pick(names);
      parts.push(`${name}=${encodeQueryValue(rng, randomJson(rng, 3))}`);
    } else if (kind === 3 && names.length > 0) {
      const name = rng.pick(names);
      parts.push(`${name}=1`, `${name}=${encodeQueryValue(rng, nastyString(rng))}`);
    } else if (kind >= 4 && kind <= 5 && names.length > 0) {
      // Numeric edge cases for any parameter: the validator coerces query strings.
      const name = rng.pick(names);
      const value = rng.pick([
        'Infinity',
        '-Infinity',
        'NaN',
        '1e308',
        '-0',
        '0x10',
        '1.5',
        ' 1',
        '',
        'true',
        'null',
      ]);
      parts.push(`${name}=${encode(value)}`);
    } else if (kind === 6) {
      parts.push(
        rng.pick([
          '%E0=1',
          'a=%E0',
          'a=%',
          '%=%',
          '__proto__=x',
          '__proto__[polluted]=1',
          'constructor[prototype][polluted]=1',
          'a[]=1&a[]=2',
          'a[b][c]=d',
          '=',
          '&&&',
          'limit=-1',
          'limit=1e308',
          'limit=NaN',
          'limit=0x10',
          'limit=',
          'attempt=0',
          'attempt=99999999999999999999',
          `x=${'q'.repeat(3000)}`,
        ]),
      );
    } else {
      parts.push(`${encode(randomString(rng, 10))}=${encodeQueryValue(rng, randomJson(rng, 2))}`);
    }
  }
  return parts.length === 0 ? (rng.chance(0.3) ? '?' : '') : `?${parts.join('&')}`;
}

/** One route as the server serves it: its method and its URL pattern (`/v1/jobs/:jobId`). */
export interface Route {
  method: string;
  url: string;
  /** In the OpenAPI document (and so with request schemas); false for hidden routes. */
  documented: boolean;
  params: Record<string, Schema>;
  query: Record<string, Schema>;
  /** Request body media types with their schemas, from the OpenAPI document. */
  body: Record<string, Schema | undefined>;
}

interface OpenApiOperation {
  parameters?: { in: string; name: string; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}

/**
 * Every route the server answers, read from the running server: the OpenAPI document for the
 * documented ones (with their schemas) plus `printRoutes()` for the rest (`/docs`, ...).
 * HEAD twins of GET routes are left out.
 */
export function routesOf(
  openapi: { paths: Record<string, Record<string, OpenApiOperation>> },
  printed: string,
): Route[] {
  const routes = new Map<string, Route>();
  for (const [path, operations] of Object.entries(openapi.paths)) {
    const url = path.replace(/\{([^}]+)\}/g, ':$1');
    for (const [method, op] of Object.entries(operations)) {
      const params: Record<string, Schema> = {};
      const query: Record<string, Schema> = {};
      for (const p of op.parameters ?? []) {
        if (p.in === 'path') params[p.name] = p.schema ?? {};
        if (p.in === 'query') query[p.name] = p.schema ?? {};
      }
      const body: Record<string, Schema | undefined> = {};
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {}))
        body[type] = media.schema;
      const m = method.toUpperCase();
      routes.set(`${m} ${url}`, { method: m, url, documented: true, params, query, body });
    }
  }
  // printRoutes({ commonPrefix: false }) draws a tree: each line adds a segment to its parent's.
  const stack: string[] = [];
  for (const line of printed.split('\n')) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = match[1]!.length / 4;
    const url = (depth === 0 ? '' : stack[depth - 1]!) + match[2]!;
    stack[depth] = url;
    stack.length = depth + 1;
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim())) {
      if (method === '' || method === 'HEAD') continue;
      if (!routes.has(`${method} ${url}`)) {
        const params = Object.fromEntries(
          [...url.matchAll(/:([A-Za-z0-9_]+)/g)].map((p) => [p[1]!, { type: 'string' }]),
        );
        routes.set(`${method} ${url}`, {
          method,
          url,
          documented: false,
          params,
          query: {},
          body: {},
        });
      }
    }
  }
  return [...routes.values()];
}

/** A request as the fuzzer sends it. */
export interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
  /** What the case is, for the failure report. */
  kind: string;
}

/**
 * Why `res` breaks the one error format (`{ error: { code, message[, issues] } }` with a
 * documented code, the status that code documents, and no stack trace), or null if it keeps it.
 */
export function errorFormatProblem(res: {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}): string | null {
  const type = String(res.headers['content-type'] ?? '');
  if (!type.includes('application/json')) return `content-type is "${type}", not JSON`;
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    return 'body is not JSON';
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return 'body is not an object';
  const keys = Object.keys(body);
  if (keys.length !== 1 || keys[0] !== 'error')
    return `body keys are [${keys.join(', ')}], not [error]`;
  const error = (body as { error: unknown }).error;
  if (typeof error !== 'object' || error === null || Array.isArray(error))
    return 'error is not an object';
  const errorKeys = Object.keys(error).sort().join(',');
  if (errorKeys !== 'code,message' && errorKeys !== 'code,issues,message')
    return `error keys are [${errorKeys}], not [code, message(, issues)]`;
  const { code, message, issues } = error as { code: unknown; message: unknown; issues?: unknown };
  if (typeof code !== 'string' || !(code in ERROR_CODES))
    return `code ${JSON.stringify(code)} is not in ERROR_CODES`;
  if (typeof message !== 'string' || message.length === 0)
    return 'message is not a non-empty string';
  if (issues !== undefined) {
    if (!Array.isArray(issues)) return 'issues is not an array';
    for (const issue of issues as unknown[]) {
      if (
        typeof issue !== 'object' ||
        issue === null ||
        Object.keys(issue).sort().join(',') !== 'message,path' ||
        typeof (issue as { path: unknown }).path !== 'string' ||
        typeof (issue as { message: unknown }).message !== 'string'
      )
        return `issue ${JSON.stringify(issue)} is not { path, message }`;
    }
  }
  const documented = HTTP_STATUS[code as keyof typeof ERROR_CODES];
  if (documented !== res.statusCode)
    return `status ${res.statusCode} but code "${code}" is documented as ${documented}`;
  if (/\n\s+at /.test(res.body) || /\bat [^\s]+ \(.*:\d+:\d+\)/.test(res.body))
    return 'body contains a stack trace';
  if (res.body.includes('node_modules')) return 'body names node_modules';
  return null;
}

/** At most `max` characters of `text`, saying how much was cut. */
export function truncate(text: string, max = 400): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}
