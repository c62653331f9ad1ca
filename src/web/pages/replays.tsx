import { useQuery } from '@tanstack/react-query';
import { ErrorBox, Loading } from '../components/common.js';
import { api, JOB_STATES } from '../lib/api.js';
import { time } from '../lib/format.js';
import { Link } from '../lib/router.js';

/** Replays, newest first, and one replay's progress: its jobs by state, refreshed live. */

interface Replay {
  replayId: string;
  module: string;
  moduleVersion: number | null;
  selector: Record<string, string>;
  jobs: number;
  createdAt: string;
  states?: Record<string, number>;
}

function Progress(props: { replay: Replay }) {
  const states = props.replay.states ?? {};
  const total = Math.max(1, props.replay.jobs);
  const ended = (states.succeeded ?? 0) + (states.dead_lettered ?? 0) + (states.cancelled ?? 0);
  return (
    <>
      <progress max={total} value={ended} aria-label="Jobs ended">
        {ended}/{total}
      </progress>{' '}
      {ended}/{props.replay.jobs} ended ·{' '}
      {JOB_STATES.filter((s) => (states[s] ?? 0) > 0)
        .map((s) => `${states[s]} ${s}`)
        .join(' · ')}
    </>
  );
}

function ReplayDetail(props: { replayId: string }) {
  const query = useQuery({
    queryKey: ['replay', props.replayId],
    queryFn: () => api<Replay>(`/v1/replays/${encodeURIComponent(props.replayId)}`),
  });
  if (query.error) return <ErrorBox error={query.error} />;
  if (query.data === undefined) return <Loading what="the replay" />;
  const r = query.data;
  return (
    <>
      <h1>Replay of {r.module}</h1>
      <p>
        <code>{r.replayId}</code> · {time(r.createdAt)} · version {r.moduleVersion ?? 'current'} ·
        selector <code>{JSON.stringify(r.selector)}</code>
      </p>
      <p>
        <Progress replay={r} />
      </p>
      <Link to={`/jobs?module=${encodeURIComponent(r.module)}`}>Jobs of {r.module}</Link>
    </>
  );
}

export function ReplaysPage(props: { replayId: string | undefined }) {
  const query = useQuery({
    queryKey: ['replay', 'list'],
    queryFn: () => api<{ replays: Replay[] }>('/v1/replays?limit=100').then((r) => r.replays),
    enabled: props.replayId === undefined,
  });
  if (props.replayId !== undefined) return <ReplayDetail replayId={props.replayId} />;
  return (
    <>
      <h1>Replays</h1>
      <p className="muted">
        Start one from a job (Replay) or a failure group; the CLI has <code>ion replay start</code>.
      </p>
      <ErrorBox error={query.error} />
      {query.data === undefined ? <Loading what="replays" /> : null}
      {query.data?.length === 0 ? <p>No replays yet.</p> : null}
      <ul>
        {query.data?.map((r) => (
          <li key={r.replayId}>
            <Link to={`/replays/${encodeURIComponent(r.replayId)}`}>
              {r.module} · {r.jobs} job(s)
            </Link>{' '}
            · {time(r.createdAt)}
          </li>
        ))}
      </ul>
    </>
  );
}
