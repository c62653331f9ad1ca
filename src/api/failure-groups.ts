import { createHash } from 'node:crypto';
import type { Job } from '../core/types.js';
import type { Deps } from './routes/dashboard.js';

/**
 * Failures grouped for the dashboard's failures page: by module and a fingerprint of the
 * reason and of the log's last line, so the same failure on different inputs is one group
 * and one exit code with two causes is two.
 */

/** Failed and dead-lettered jobs read per state when grouping failures. */
const FAILURE_SCAN = 1000;

/**
 * Normalises a failure reason so that the same failure on different inputs groups together:
 * ids, hashes, numbers, paths in temporary directories and quoted values become placeholders.
 */
export function normaliseReason(reason: string): string {
  return reason
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/\b[0-9a-f]{16,}\b/gi, '<hex>')
    .replace(/(\/[\w.-]+)+/g, '<path>')
    .replace(/"[^"]*"|'[^']*'/g, '<str>')
    .replace(/\d+(\.\d+)?/g, '<n>')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
}

/** The last non-empty line of a log tail: usually the error the module printed. */
export function lastLine(logTail: string): string {
  const lines = logTail.split('\n').map((l) => l.trim());
  return lines.filter((l) => l !== '').at(-1) ?? '';
}

/** Same module failure, same fingerprint: the normalised reason plus the log's last line. */
export function fingerprint(reason: string, logLine = ''): string {
  return createHash('sha256')
    .update(`${normaliseReason(reason)}\u0000${normaliseReason(logLine)}`)
    .digest('hex')
    .slice(0, 12);
}

export interface FailureGroup {
  module: string;
  fingerprint: string;
  /** The failure kind of the group's latest attempt: `module`, `platform` or null (unknown). */
  kind: string | null;
  reason: string;
  /** The last line of a dead-lettered job's log (what the module printed last), or ''. */
  logLine: string;
  count: number;
  states: { failed: number; dead_lettered: number };
  firstSeen: string;
  lastSeen: string;
  jobIds: string[];
}

/** Groups failed and dead-lettered jobs by module and reason fingerprint, newest group first. */
export async function failureGroups(deps: Deps, module?: string): Promise<FailureGroup[]> {
  const jobs: Job[] = [];
  for (const state of ['failed', 'dead_lettered'] as const) {
    jobs.push(
      ...(await deps.control.listJobs({
        state,
        limit: FAILURE_SCAN,
        ...(module === undefined ? {} : { module }),
      })),
    );
  }
  // Dead letters keep the log tail: its last line tells apart failures with one exit code.
  const tails = new Map<string, string>();
  const letters = await deps.control.listDeadLetters({
    limit: FAILURE_SCAN,
    ...(module === undefined ? {} : { module }),
  });
  for (const letter of letters) tails.set(letter.jobId, lastLine(letter.logTail));
  const groups = new Map<string, FailureGroup>();
  for (const job of jobs) {
    const reason = job.lastError ?? '(no reason recorded)';
    const logLine = tails.get(job.jobId) ?? '';
    const fp = fingerprint(reason, logLine);
    const key = `${job.module}\u0000${fp}`;
    let group = groups.get(key);
    if (group === undefined) {
      group = {
        module: job.module,
        fingerprint: fp,
        kind: null,
        reason,
        logLine,
        count: 0,
        states: { failed: 0, dead_lettered: 0 },
        firstSeen: job.updatedAt,
        lastSeen: job.updatedAt,
        jobIds: [],
      };
      groups.set(key, group);
    }
    group.count++;
    group.states[job.state as 'failed' | 'dead_lettered']++;
    group.jobIds.push(job.jobId);
    if (job.updatedAt < group.firstSeen) group.firstSeen = job.updatedAt;
    if (job.updatedAt > group.lastSeen) {
      group.lastSeen = job.updatedAt;
      group.reason = reason;
    }
  }
  const list = [...groups.values()].sort((a, b) => b.lastSeen.localeCompare(a.lastSeen));
  // The kind comes from the attempts: one read per group (its latest job), never per job.
  await Promise.all(
    list.map(async (group) => {
      const { attempts } = await deps.control.getJob(group.jobIds[0]!);
      group.kind = attempts.at(-1)?.errorKind ?? null;
    }),
  );
  return list;
}
