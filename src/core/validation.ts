import type { z } from 'zod';
import { ValidationError, type ValidationIssue } from './errors.js';

/** Renders a zod issue path as `modules[0].run.command`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** Converts zod issues into Ion's validation issues, naming the field and the problem. */
export function issuesFromZod(error: z.ZodError): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const issue of error.issues) {
    const base = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        issues.push({ path: base === '' ? key : `${base}.${key}`, message: 'unknown field' });
      }
      continue;
    }
    issues.push({ path: base === '' ? '(root)' : base, message: issue.message });
  }
  return issues;
}

/** Parses `input` with `schema` or throws a ValidationError listing every problem. */
export function parseOrThrow<T extends z.ZodType>(
  schema: T,
  input: unknown,
  what: string,
): z.output<T> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = issuesFromZod(result.error);
  const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
  throw new ValidationError(`invalid ${what}:\n${lines}`, issues);
}
