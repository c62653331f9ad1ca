import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FaultRecord } from './faults.js';
import type { LoadResult, Sample } from './load.js';
import { CHILDREN, MODULES } from './pipeline.js';
import { processesUnder } from './procs.js';
import type { Setup, StoreReader } from './setups.js';

/**
 * The independent invariant checker. It reads the store with SQL (never through Ion's code),
 * the blob store's objects, the module markers, the process table, the data directories and
 * the API samples, and lists every violation. Nothing here trusts what Ion says about itself.
 */

interface EventRow {
  event_id: string;
  type: string;
  correlation_id: string;
  parent_event_id: string | null;
  source: string;
  source_job_id: string | null;
  data: unknown;
  files: unknown;
}
interface JobRow {
  job_id: string;
  module: string;
  event_id: string;
  state: string;
  attempts: number;
  outputs_json: unknown;
  replay_id: string | null;
}
interface AttemptRow {
  job_id: string;
  attempt: number;
  outcome: string;
  started_at: string;
  finished_at: string | null;
  error_code: string | null;
  log_blob: string | null;
}

export interface Snapshot {
  events: EventRow[];
  jobs: JobRow[];
  attempts: AttemptRow[];
  deadLetters: { job_id: string; reason: string }[];
  insights: { job_id: string; key: string }[];
  modules: { name: string; subscribes: unknown; deleted: unknown }[];
  unpublished: number;
}

const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

export async function snapshot(store: StoreReader): Promise<Snapshot> {
  // One query at a time: a pg client runs them in sequence anyway.
  const events = await store.query<EventRow>(
    'SELECT event_id, type, correlation_id, parent_event_id, source, source_job_id, data, files FROM events',
  );
  const jobs = await store.query<JobRow>(
    'SELECT job_id, module, event_id, state, attempts, outputs_json, replay_id FROM jobs',
  );
  const attempts = await store.query<AttemptRow>(
    'SELECT job_id, attempt, outcome, started_at, finished_at, error_code, log_blob FROM attempts',
  );
  const deadLetters = await store.query<{ job_id: string; reason: string }>(
    'SELECT job_id, reason FROM dead_letters',
  );
  const insights = await store.query<{ job_id: string; key: string }>(
    'SELECT job_id, key FROM insights',
  );
  const modules = await store.query<{ name: string; subscribes: unknown; deleted: unknown }>(
    'SELECT name, subscribes, deleted FROM modules',
  );
  const outbox = await store.query<{ n: string | number }>(
    'SELECT count(*) AS n FROM outbox WHERE published_at IS NULL',
  );
  return {
    events,
    jobs,
    attempts,
    deadLetters,
    insights,
    modules,
    unpublished: Number(outbox[0]?.n ?? 0),
  };
}

/** (event, module) pairs that need a job and have none, and jobs that have not ended. */
export function pendingWork(s: Snapshot): { missingJobs: string[]; unended: JobRow[] } {
  const subscribers = new Map<string, string[]>();
  for (const m of s.modules) {
    if (m.deleted === true || m.deleted === 1) continue;
    for (const type of json<string[]>(m.subscribes))
      subscribers.set(type, [...(subscribers.get(type) ?? []), m.name]);
  }
  const jobKeys = new Set(
    s.jobs.filter((j) => j.replay_id === null).map((j) => `${j.module}\0${j.event_id}`),
  );
  const missingJobs: string[] = [];
  for (const e of s.events)
    for (const m of subscribers.get(e.type) ?? [])
      if (!jobKeys.has(`${m}\0${e.event_id}`)) missingJobs.push(`${m} on ${e.type} ${e.event_id}`);
  const unended = s.jobs.filter((j) => !['succeeded', 'dead_lettered'].includes(j.state));
  return { missingJobs, unended };
}

export interface CheckReport {
  violations: string[];
  eventsLost: number;
  duplicateEffects: number;
  jobsRun: number;
  attemptsRun: number;
  events: number;
  blobsChecked: number;
  /** Outcome of the picky module per input class, e.g. good → succeeded: 40. */
  outcomes: Record<string, Record<string, number>>;
  deadLetteredByFaults: number;
  /** Later attempts of a succeeded job that started before its success committed. */
  overlappingRuns: number;
}

async function sha256Of(stream: NodeJS.ReadableStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function check(
  setup: Setup,
  s: Snapshot,
  load: LoadResult,
  faults: FaultRecord[],
  samples: Sample[],
): Promise<CheckReport> {
  const v: string[] = [];
  let eventsLost = 0;
  let duplicateEffects = 0;
  const lost = (msg: string): void => {
    eventsLost += 1;
    v.push(`lost: ${msg}`);
  };
  const dup = (msg: string): void => {
    duplicateEffects += 1;
    v.push(`duplicate: ${msg}`);
  };
  const events = new Map(s.events.map((e) => [e.event_id, e]));
  const dataOf = (e: EventRow): Record<string, string> =>
    Object.fromEntries(
      json<{ key: string; value: string }[]>(e.data).map((kv) => [kv.key, kv.value]),
    );

  // 1. Every accepted root is stored, once per idempotency key.
  for (const root of load.accepted) {
    const e = events.get(root.eventId);
    if (e === undefined) lost(`accepted root ${root.eventId} (${root.key}) is not in the store`);
    else if (e.correlation_id !== e.event_id || dataOf(e).k !== root.key)
      v.push(`root ${root.eventId} is stored with other identity or data`);
  }
  const byKey = new Map<string, number>();
  for (const e of s.events.filter((x) => x.type === 'soak.root')) {
    const k = dataOf(e).k ?? '';
    byKey.set(k, (byKey.get(k) ?? 0) + 1);
  }
  for (const [k, n] of byKey) if (n > 1) dup(`root key ${k} stored ${n} times`);

  // 2. Every tree complete: every subscribed module has a job that ended.
  const { missingJobs, unended } = pendingWork(s);
  for (const m of missingJobs) lost(`no job for ${m}`);
  for (const j of unended) v.push(`job ${j.job_id} (${j.module}) still ${j.state} after the drain`);
  const deadLetters = new Map(s.deadLetters.map((d) => [d.job_id, d.reason]));
  for (const j of s.jobs.filter((x) => x.state === 'dead_lettered')) {
    const reason = deadLetters.get(j.job_id);
    if (reason === undefined || reason.trim() === '')
      v.push(`job ${j.job_id} (${j.module}) dead-lettered without a reason`);
  }

  // 3. Children: a succeeded job raised exactly its children, once each; others raised none.
  const children = new Map<string, EventRow[]>();
  for (const e of s.events)
    if (e.source_job_id !== null)
      children.set(e.source_job_id, [...(children.get(e.source_job_id) ?? []), e]);
  for (const j of s.jobs) {
    const got = children.get(j.job_id) ?? [];
    const want = CHILDREN[j.module];
    if (j.state !== 'succeeded') {
      if (got.length > 0)
        dup(`job ${j.job_id} (${j.module}, ${j.state}) has ${got.length} children`);
      continue;
    }
    if (want === undefined) continue;
    const ns = new Set(got.map((e) => dataOf(e).n));
    if (got.length > want[1] || ns.size < got.length)
      dup(`job ${j.job_id} (${j.module}) raised ${got.length} children, ${ns.size} distinct`);
    if (ns.size < want[1])
      lost(`job ${j.job_id} (${j.module}) raised ${ns.size} of ${want[1]} children`);
    for (const e of got)
      if (e.type !== want[0] || e.parent_event_id !== j.event_id)
        v.push(
          `child ${e.event_id} of job ${j.job_id} has type ${e.type}, parent ${e.parent_event_id}`,
        );
  }
  for (const e of s.events)
    if (e.parent_event_id !== null && !events.has(e.parent_event_id))
      v.push(`event ${e.event_id} names a parent ${e.parent_event_id} that is not stored`);

  // 4. No job succeeded twice; no module ran after its job succeeded (markers, independent).
  const succeededAttempt = new Map<string, number>();
  const succeededAt = new Map<string, number>();
  for (const a of s.attempts.filter((x) => x.outcome === 'succeeded')) {
    if (succeededAttempt.has(a.job_id)) dup(`job ${a.job_id} has two succeeded attempts`);
    succeededAttempt.set(a.job_id, a.attempt);
    if (a.finished_at !== null) succeededAt.set(a.job_id, Date.parse(a.finished_at));
  }
  const startedAt = new Map(
    s.attempts.map((a) => [`${a.job_id}.${a.attempt}`, Date.parse(a.started_at)]),
  );
  let overlappingRuns = 0;
  for (const j of s.jobs.filter((x) => x.state === 'succeeded'))
    if (!succeededAttempt.has(j.job_id))
      v.push(`job ${j.job_id} succeeded with no succeeded attempt`);
  const jobOf = new Map(
    s.jobs.filter((j) => j.replay_id === null).map((j) => [`${j.module}.${j.event_id}`, j]),
  );
  const markers = await readdir(setup.markers).catch(() => [] as string[]);
  for (const marker of markers) {
    const dot = marker.lastIndexOf('.');
    const job = jobOf.get(marker.slice(0, dot));
    const attempt = Number(marker.slice(dot + 1));
    if (job === undefined) {
      v.push(`marker ${marker}: a module ran for a job the store does not know`);
      continue;
    }
    const s0 = succeededAttempt.get(job.job_id);
    if (s0 === undefined || attempt <= s0) continue;
    // A later attempt of a succeeded job. Ion started it (the store's claim, its `started_at`)
    // after the success was recorded: a violation. Before it (the earlier attempt's lease
    // lapsed and another delivery started a new attempt while it still ran): at-least-once
    // execution the commit protocol absorbs, counted. The module's own start (the marker) is
    // no measure: a starved machine can start the process seconds after the claim.
    const claimedAt = startedAt.get(`${job.job_id}.${attempt}`);
    const doneAt = succeededAt.get(job.job_id);
    if (claimedAt === undefined)
      v.push(
        `marker ${marker}: the module ran for attempt ${attempt}, which the store does not know`,
      );
    else if (doneAt === undefined || claimedAt >= doneAt)
      dup(`${marker}: the module ran again (attempt ${attempt}) after attempt ${s0} succeeded`);
    else overlappingRuns += 1;
  }
  // One insight "run" per succeeded job, none twice.
  const runs = new Map<string, number>();
  for (const i of s.insights.filter((x) => x.key === 'run'))
    runs.set(i.job_id, (runs.get(i.job_id) ?? 0) + 1);
  for (const [jobId, n] of runs) if (n > 1) dup(`job ${jobId} stored its insight ${n} times`);
  for (const j of s.jobs.filter((x) => x.state === 'succeeded' && x.module !== MODULES.hang))
    if (!runs.has(j.job_id)) v.push(`succeeded job ${j.job_id} (${j.module}) has no insight`);

  // 5. Every blob a record names exists with the right sha256.
  const blobs = new Set<string>();
  for (const e of s.events)
    for (const f of json<{ sha256: string }[]>(e.files)) blobs.add(f.sha256);
  for (const j of s.jobs)
    for (const f of json<{ sha256: string }[]>(j.outputs_json)) blobs.add(f.sha256);
  for (const a of s.attempts) if (a.log_blob !== null && a.log_blob !== '') blobs.add(a.log_blob);
  for (const sha of blobs) {
    const stream = await setup.readBlob(sha);
    if (stream === undefined) {
      lost(`blob ${sha} is named by a record and missing`);
      continue;
    }
    const got = await sha256Of(stream);
    if (got !== sha) v.push(`blob ${sha} holds bytes hashing to ${got}`);
  }

  // 6. The outbox is empty.
  if (s.unpublished > 0) v.push(`${s.unpublished} outbox rows never published`);

  // 7. No orphan process, no temporary file left in a data directory.
  for (const p of (await processesUnder(setup.root)).filter((x) => !setup.infra.includes(x.pid)))
    v.push(`orphan process ${p.pid} (${p.cmdline.slice(0, 100)}) in ${p.cwd}`);
  for (const d of setup.dataDirs) {
    const jobs = await readdir(join(d, 'jobs')).catch(() => [] as string[]);
    if (jobs.length > 0)
      v.push(`${jobs.length} job directories left in ${d}/jobs (e.g. ${jobs[0]})`);
    const tmp = await readdir(join(d, 'blobs/tmp')).catch(() => [] as string[]);
    if (tmp.length > 0) v.push(`${tmp.length} temporary uploads left in ${d}/blobs/tmp`);
    const logs = (
      await readdir(join(d, 'logs'), { recursive: true }).catch(() => [] as string[])
    ).filter((f) => f.endsWith('.log'));
    if (logs.length > 0) v.push(`${logs.length} attempt logs left in ${d}/logs (e.g. ${logs[0]})`);
  }

  // 8. The API: never a 5xx other than 503, never a hang, errors in the error format; connection
  //    refusals only while the API's own process was down.
  const down = faults.filter((f) => f.kind === 'kill-server' || f.kind === 'kill-ion-up');
  const during = (at: number): boolean =>
    down.some((f) => at >= f.injectedAt - 1000 && at <= (f.recoveredAt ?? f.restoredAt) + 1000);
  for (const x of samples) {
    const when = new Date(x.at).toISOString();
    if (x.status === -1) v.push(`${x.what} at ${when}: no answer within the hang limit`);
    // A request in flight when the API's process was killed is cut then: judged by its end.
    else if (x.status === 0 && !during(x.endedAt ?? x.at))
      v.push(`${x.what} at ${when}: connection failed (${x.failure ?? 'no cause given'})`);
    else if (x.status >= 500 && x.status !== 503)
      v.push(`${x.what} at ${when}: HTTP ${x.status} ${x.code ?? ''}`);
    else if (x.status >= 400 && x.errorFormat !== true)
      v.push(`${x.what} at ${when}: HTTP ${x.status} without the {error:{code,message}} body`);
  }
  for (const f of faults)
    if (f.recoveredAt === undefined)
      v.push(`fault ${f.kind} at ${new Date(f.injectedAt).toISOString()}: never recovered`);

  // 9. No token value in any log.
  for (const file of await setup.logFiles()) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (text.includes(setup.token)) v.push(`the API token appears in ${file}`);
  }

  // Outcomes of the module that fails on some inputs, per input class.
  const outcomes: Record<string, Record<string, number>> = {};
  const attemptsOf = new Map<string, AttemptRow[]>();
  for (const a of s.attempts) attemptsOf.set(a.job_id, [...(attemptsOf.get(a.job_id) ?? []), a]);
  const outcomeOf = (j: JobRow): string => {
    if (j.state !== 'dead_lettered') return j.state;
    const codes = (attemptsOf.get(j.job_id) ?? []).map((a) => a.error_code ?? '?');
    return `dead_lettered (${codes[codes.length - 1] ?? '?'})`;
  };
  let deadLetteredByFaults = 0;
  for (const j of s.jobs) {
    const e = events.get(j.event_id);
    let cls: string | undefined;
    if (j.module === MODULES.picky && e !== undefined) cls = `root class=${dataOf(e).class}`;
    else if (j.module === MODULES.hang) cls = 'module never exits';
    else if (j.module === MODULES.flood) cls = 'module floods its output';
    if (cls !== undefined) {
      const o = (outcomes[cls] ??= {});
      o[outcomeOf(j)] = (o[outcomeOf(j)] ?? 0) + 1;
    } else if (j.state === 'dead_lettered') deadLetteredByFaults += 1;
  }
  return {
    violations: v,
    eventsLost,
    duplicateEffects,
    jobsRun: s.jobs.length,
    attemptsRun: s.attempts.length,
    events: s.events.length,
    blobsChecked: blobs.size,
    outcomes,
    deadLetteredByFaults,
    overlappingRuns,
  };
}
