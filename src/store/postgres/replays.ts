import { replayJobPlan, replayJobVersion } from '../../core/job-lifecycle.js';
import { nowIso } from '../../core/time.js';
import { jobStateCounts, type Replay, type ReplayStatus } from '../../core/types.js';
import type { ReplayTarget } from '../document-store.js';
import { replayFromRow, type DecodedReplayRow } from '../rows.js';
import { conditions, insertOutbox, type Ctx } from './rows.js';

/** The replay statements of the Postgres document store (see the port for their meaning). */

/** Creates the replay if absent, then each target's job and outbox row unless the job exists. */
export async function addReplayJobs(
  ctx: Ctx,
  replay: Replay,
  targets: ReplayTarget[],
): Promise<number> {
  const { q, t } = ctx;
  await q.query(
    `INSERT INTO ${t.replays} (replay_id, module, module_version, selector, jobs, created_at)
     VALUES ($1, $2, $3, $4::jsonb, 0, $5) ON CONFLICT (replay_id) DO NOTHING`,
    [
      replay.replayId,
      replay.module,
      replay.moduleVersion,
      JSON.stringify(replay.selector),
      replay.createdAt,
    ],
  );
  const now = nowIso();
  const current = await q.query<{ version: number }>(
    `SELECT version FROM ${t.modules} WHERE name = $1`,
    [replay.module],
  );
  const version = replayJobVersion(replay, current.rows[0]?.version);
  let created = 0;
  for (const target of targets) {
    const plan = replayJobPlan(replay, target.eventId);
    const res = await q.query(
      `INSERT INTO ${t.jobs} (job_id, module, module_version, event_id, correlation_id, state,
         attempts, failures_since_redrive, created_at, updated_at, replay_id, replay_of,
         pinned_version)
       VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $7, $8,
         (SELECT job_id FROM ${t.jobs} WHERE job_id = $9), $10)
       ON CONFLICT (job_id) DO NOTHING`,
      [
        plan.jobId,
        replay.module,
        version,
        target.eventId,
        target.correlationId,
        plan.state,
        now,
        replay.replayId,
        plan.ordinaryJobId,
        replay.moduleVersion,
      ],
    );
    if (!res.rowCount) continue;
    await insertOutbox(ctx, target.eventId, plan.subscription, now, plan.jobId);
    created += 1;
  }
  await q.query(`UPDATE ${t.replays} SET jobs = jobs + $1 WHERE replay_id = $2`, [
    created,
    replay.replayId,
  ]);
  return created;
}

export async function getReplay({ q, t }: Ctx, replayId: string): Promise<ReplayStatus | null> {
  const { rows } = await q.query<DecodedReplayRow>(
    `SELECT * FROM ${t.replays} WHERE replay_id = $1`,
    [replayId],
  );
  if (!rows[0]) return null;
  const counts = await q.query<{ state: string; n: string }>(
    `SELECT state, COUNT(*) AS n FROM ${t.jobs} WHERE replay_id = $1 GROUP BY state`,
    [replayId],
  );
  return { ...replayFromRow(rows[0]), states: jobStateCounts(counts.rows) };
}

export async function listReplays(
  { q, t }: Ctx,
  filter: { module?: string; limit?: number } = {},
): Promise<Replay[]> {
  const { where, params } = conditions({ module: filter.module });
  const { rows } = await q.query<DecodedReplayRow>(
    `SELECT * FROM ${t.replays} ${where} ORDER BY created_at DESC, replay_id DESC
     LIMIT $${params.length + 1}`,
    [...params, filter.limit ?? 100],
  );
  return rows.map(replayFromRow);
}
