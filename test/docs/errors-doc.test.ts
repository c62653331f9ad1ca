import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HTTP_STATUS } from '../../src/api/errors.js';
import { ERROR_CODES, type ErrorCode } from '../../src/core/errors.js';

const DOC = new URL('../../docs/errors.md', import.meta.url);

/** Rows of the table whose first cell is a backticked code: `| `code` | status | meaning |`. */
function documentedRows(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    const match = /^\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (match === null) continue;
    const code = match[1]!;
    expect(rows.has(code), `${code} is documented twice`).toBe(false);
    rows.set(
      code,
      match[2]!.split('|').map((cell) => cell.trim()),
    );
  }
  return rows;
}

describe('docs/errors.md', () => {
  const rows = documentedRows();
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];

  it('has a row for every code in ERROR_CODES', () => {
    const missing = codes.filter((code) => !rows.has(code));
    expect(missing).toEqual([]);
  });

  it('documents no code that ERROR_CODES lacks', () => {
    const unknown = [...rows.keys()].filter((code) => !(code in ERROR_CODES));
    expect(unknown).toEqual([]);
  });

  it('documents the HTTP status of each code as HTTP_STATUS has it', () => {
    for (const code of codes) {
      const cells = rows.get(code);
      if (cells === undefined) continue; // reported by the first test
      expect(cells[0], `status of ${code}`).toBe(String(HTTP_STATUS[code]));
    }
  });

  it('gives every code a meaning', () => {
    for (const [code, cells] of rows) expect(cells[1] ?? '', `meaning of ${code}`).not.toBe('');
  });
});
