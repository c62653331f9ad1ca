import type { KeyValue } from '../../core/types.js';
import { ValidationError, type ValidationIssue } from '../../core/errors.js';
import { invalid, isPlainObject, scalarText } from './shared.js';

/** A JSON gateway body: an object whose values are strings, numbers or booleans. */
export function metadataFromBody(body: unknown): KeyValue[] {
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
