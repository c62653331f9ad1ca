import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import {
  ActionButton,
  ErrorBox,
  FileList,
  KeyValues,
  Loading,
  StateBadge,
} from '../components/common.js';
import { LogView } from '../components/log-view.js';
import { api, type Attempt, type IonEvent, type Job, type Trace } from '../lib/api.js';
import { duration, time } from '../lib/format.js';
import { Link, navigate } from '../lib/router.js';

/**
 * One job: its attempts (failure kind and reason), each attempt's log, and the job directory
 * browsed: the input event's metadata and files, the output files, insights and raised events.
 */

function Actions(props: { job: Job }) {
  const client = useQueryClient();
  const { job } = props;
  const refresh = () => void client.invalidateQueries({ queryKey: ['job', job.jobId] });
  const ended = ['succeeded', 'dead_lettered', 'cancelled'].includes(job.state);
  return (
    <div className="actions">
      {!ended ? (
        <ActionButton
          label="Cancel"
          action={() => api(`/v1/jobs/${encodeURIComponent(job.jobId)}/cancel`, { method: 'POST' })}
          onDone={refresh}
        />
      ) : null}
      {job.state === 'dead_lettered' ? (
        <ActionButton
          label="Redrive"
          action={() =>
            api(`/v1/dead-letters/${encodeURIComponent(job.jobId)}/redrive`, { method: 'POST' })
          }
          onDone={refresh}
        />
      ) : null}
      <ActionButton
        label="Replay"
        action={() =>
          api<{ replay: { replayId: string } }>('/v1/replays', {
            json: { module: job.module, eventId: job.eventId },
          })
        }
        onDone={(r) =>
          navigate(
            `/replays/${encodeURIComponent((r as { replay: { replayId: string } }).replay.replayId)}`,
          )
        }
      />
    </div>
  );
}

function Attempts(props: { job: Job; attempts: Attempt[] }) {
  const client = useQueryClient();
  const [open, setOpen] = useState<number | null>(null);
  const shown = open ?? props.attempts.at(-1)?.attempt ?? null;
  const attempt = props.attempts.find((a) => a.attempt === shown);
  return (
    <>
      <table className="list">
        <caption>Attempts</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Outcome</th>
            <th scope="col">Started</th>
            <th scope="col">Duration</th>
            <th scope="col">Exit</th>
            <th scope="col">Failure kind</th>
            <th scope="col">Reason</th>
            <th scope="col">Log</th>
          </tr>
        </thead>
        <tbody>
          {props.attempts.map((a) => (
            <tr key={a.attempt} aria-selected={a.attempt === shown}>
              <td>{a.attempt}</td>
              <td>
                <StateBadge state={a.outcome} />
              </td>
              <td>{time(a.startedAt)}</td>
              <td>{duration(a.durationMs)}</td>
              <td>{a.exitCode ?? '—'}</td>
              <td>{a.errorKind ?? '—'}</td>
              <td className="wrap">{a.error === null ? '—' : `${a.errorCode ?? ''} ${a.error}`}</td>
              <td>
                <button
                  type="button"
                  onClick={() => setOpen(a.attempt)}
                  aria-pressed={a.attempt === shown}
                >
                  Show log {a.attempt}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.attempts.length === 0 ? <p>No attempt has started yet.</p> : null}
      {attempt === undefined ? null : (
        <>
          <h2>Log of attempt {attempt.attempt}</h2>
          <LogView
            jobId={props.job.jobId}
            attempt={attempt.attempt}
            running={attempt.outcome === 'running'}
            onEnd={() => void client.invalidateQueries({ queryKey: ['job', props.job.jobId] })}
          />
        </>
      )}
    </>
  );
}

function Directory(props: { job: Job }) {
  const { job } = props;
  const event = useQuery({
    queryKey: ['event', job.eventId],
    queryFn: () => api<IonEvent>(`/v1/events/${encodeURIComponent(job.eventId)}`),
  });
  const trace = useQuery({
    queryKey: ['trace', job.correlationId],
    queryFn: () => api<Trace>(`/v1/traces/${encodeURIComponent(job.correlationId)}`),
  });
  const insights = trace.data?.insights.filter((i) => i.jobId === job.jobId) ?? [];
  const raised = trace.data?.events.filter((e) => e.sourceJobId === job.jobId) ?? [];
  return (
    <section aria-labelledby="dir">
      <h2 id="dir">Job directory</h2>
      <ErrorBox error={event.error ?? trace.error} />
      <h3>in/eventmeta.json</h3>
      {event.data === undefined ? (
        <Loading what="the event" />
      ) : (
        <KeyValues items={event.data.metadata} caption="Event metadata" />
      )}
      <h3>in/data</h3>
      {event.data === undefined ? null : (
        <FileList files={event.data.files} caption="Input files" />
      )}
      <h3>out/data</h3>
      <FileList files={job.outputs} caption="Output files" />
      <h3>out/insights.json</h3>
      <KeyValues items={insights} caption="Insights" />
      <h3>out/events</h3>
      {raised.length === 0 ? (
        <p className="muted">No raised events.</p>
      ) : (
        <ul>
          {raised.map((e) => (
            <li key={e.eventId}>
              <strong>{e.type}</strong> · {e.files.length} file(s) · {e.metadata.length} metadata
              key(s) · <code>{e.eventId}</code>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function JobPage(props: { jobId: string }) {
  const query = useQuery({
    queryKey: ['job', props.jobId],
    queryFn: () =>
      api<{ job: Job; attempts: Attempt[] }>(`/v1/jobs/${encodeURIComponent(props.jobId)}`),
  });
  if (query.error) return <ErrorBox error={query.error} />;
  if (query.data === undefined) return <Loading what="the job" />;
  const { job, attempts } = query.data;
  return (
    <>
      <h1>
        Job {job.module} <StateBadge state={job.state} />
      </h1>
      <dl className="facts">
        <dt>Job id</dt>
        <dd>
          <code>{job.jobId}</code>
        </dd>
        <dt>Module version</dt>
        <dd>{job.moduleVersion}</dd>
        <dt>Event</dt>
        <dd>
          <code>{job.eventId}</code>
        </dd>
        <dt>Trace</dt>
        <dd>
          <Link to={`/traces/${encodeURIComponent(job.correlationId)}`}>{job.correlationId}</Link>
        </dd>
        <dt>Created / changed</dt>
        <dd>
          {time(job.createdAt)} / {time(job.updatedAt)}
        </dd>
        {job.lastError === null ? null : (
          <>
            <dt>Last error</dt>
            <dd className="wrap">{job.lastError}</dd>
          </>
        )}
      </dl>
      <Actions job={job} />
      <Attempts job={job} attempts={attempts} />
      <Directory job={job} />
    </>
  );
}
