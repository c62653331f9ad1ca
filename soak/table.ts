import { readFile } from 'node:fs/promises';
import { summaryTable, type SetupResult } from './summary.js';

/**
 * Prints the summary table again from the JSON results a soak wrote (SOAK_OUT), e.g.
 * `node --import tsx soak/table.ts /tmp/ion-soak-results/embedded-1.json ...`.
 */
const results: SetupResult[] = [];
for (const path of process.argv.slice(2)) {
  const raw = JSON.parse(await readFile(path, 'utf8')) as SetupResult & {
    unavailable: [string, string][];
  };
  results.push({ ...raw, unavailable: new Map(raw.unavailable) });
}
console.log(summaryTable(results));
