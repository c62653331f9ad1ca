import type { Database } from 'better-sqlite3';
import { replayJobPlan, replayJobVersion } from '../../core/job-lifecycle.js';
import { nowIso } from '../../core/time.js';
import { jobStateCounts, type Replay, type ReplayStatus } from '../../core/types.js';
import type { ReplayTarget } from '../document-store.js';
import { replayFromRow } from '../rows.js';
import { conditions, insertOutbox, jobRow } from './rows.js';

/** The replay statements of the SQLite document store (see the port for their meaning). */

interface ReplayRow {
  replay_id: string;
  module: string;
  module_version: number | null;
  selector: string;
  jobs: number;
  created_at: string;
}

function toReplay(r: ReplayRow): Replay {
  return replayFromRow({ ...r, selector: JSON.parse(r.selector) as Replay['selector'] });
}

/** Creates the replay if absent, then each target's job and outbox row unless the job exists. */
export function addReplayJobs(db: Database, replay: Replay, targets: ReplayTarget[]): number {
  db.prepare(
    `INSERT OR IGNORE INTO replays (replay_id, module, module_version, selector, jobs, created_at)
     VALUES (?, ?, ?, ?, 0, ?)`,
  ).run(
    replay.replayId,
    replay.module,
    replay.moduleVersion,
    JSON.stringify(replay.selector),
    replay.createdAt,
  );
  const insert = db.prepare(
    `INSERT OR IGNORE INTO jobs (job_id, module, module_version, event_id, correlation_id,
       state, attempts, failures_since_redrive, created_at, updated_at, replay_id, replay_of,
       pinned_version)
     VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?)`,
  );
  const now = nowIso();
  const current = db.prepare('SELECT version FROM modules WHERE name = ?').get(replay.module) as
    { version: number } | undefined;
  const version = replayJobVersion(replay, current?.version);
  let created = 0;
  for (const target of targets) {
    const plan = replayJobPlan(replay, target.eventId);
    const replayOf = jobRow(db, plan.ordinaryJobId) ? plan.ordinaryJobId : null;
    const res = insert.run(
      plan.jobId,
      replay.module,
      version,
      target.eventId,
      target.correlationId,
      plan.state,
      now,
      now,
      replay.replayId,
      replayOf,
      replay.moduleVersion,
    );
    if (res.changes === 0) continue;
    insertOutbox(db, target.eventId, plan.subscription, now, plan.jobId);
    created += 1;
  }
  db.prepare('UPDATE replays SET jobs = jobs + ? WHERE replay_id = ?').run(
    created,
    replay.replayId,
  );
  return created;
}

export function getReplay(db: Database, replayId: string): ReplayStatus | null {
  const row = db.prepare('SELECT * FROM replays WHERE replay_id = ?').get(replayId) as
    ReplayRow | undefined;
  if (!row) return null;
  const counts = db
    .prepare('SELECT state, COUNT(*) AS n FROM jobs WHERE replay_id = ? GROUP BY state')
    .all(replayId) as { state: string; n: number }[];
  return { ...toReplay(row), states: jobStateCounts(counts) };
}

export function listReplays(
  db: Database,
  filter: { module?: string; limit?: number } = {},
): Replay[] {
  const { where, params } = conditions({ module: filter.module });
  const rows = db
    .prepare(`SELECT * FROM replays ${where} ORDER BY created_at DESC, replay_id DESC LIMIT ?`)
    .all(...params, filter.limit ?? 100) as ReplayRow[];
  return rows.map(toReplay);
}
