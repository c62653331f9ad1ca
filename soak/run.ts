import { runSoak } from './soak.js';
import { SETUP_NAMES, type SetupName } from './setups.js';
import { summaryTable, type SetupResult } from './summary.js';

/**
 * `npm run soak`: SOAK_SECONDS (default 300) of load and faults per set-up, SOAK_SEED (default
 * 1), SOAK_SETUP=embedded|distributed|distributed-rabbitmq|all (default all: the three, one
 * after the other), SOAK_RATE roots per second (default 1), SOAK_KINDS a comma-separated list
 * of fault kinds (default: all), SOAK_OUT where the JSON results go (default:
 * <tmpdir>/ion-soak-results). Prints the summary table; exits 1 when the checker found a
 * violation.
 */
function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`${name} must be a positive number, not ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
}

const seconds = intEnv('SOAK_SECONDS', 300);
const seed = intEnv('SOAK_SEED', 1);
const rate = intEnv('SOAK_RATE', 1);
const which = process.env.SOAK_SETUP ?? 'all';
if (which !== 'all' && !(SETUP_NAMES as readonly string[]).includes(which)) {
  console.error(
    `SOAK_SETUP must be ${SETUP_NAMES.join(', ')} or all, not ${JSON.stringify(which)}`,
  );
  process.exit(2);
}
const setups: readonly SetupName[] = which === 'all' ? SETUP_NAMES : [which as SetupName];
const results: SetupResult[] = [];
const kinds = process.env.SOAK_KINDS?.split(',')
  .map((k) => k.trim())
  .filter((k) => k !== '');
for (const setup of setups)
  results.push(await runSoak({ setup, seconds, seed, rate, ...(kinds ? { kinds } : {}) }));
console.log(`\n${summaryTable(results)}\n`);
const violations = results.reduce((n, r) => n + r.report.violations.length, 0);
console.log(violations === 0 ? 'soak: no violation' : `soak: ${violations} violations`);
process.exit(violations === 0 ? 0 : 1);
