import { useQuery, useQueryClient } from '@tanstack/react-query';
import { ActionButton, ErrorBox, Loading } from '../components/common.js';
import { api } from '../lib/api.js';
import { time } from '../lib/format.js';
import { Link } from '../lib/router.js';

/** Dead letters, newest first: redrive or discard one, with the reason and log tail. */

interface DeadLetter {
  id: string;
  jobId: string;
  module: string;
  eventId: string | null;
  reason: string;
  attempts: number;
  logTail: string;
  createdAt: string;
}

export function DeadLettersPage() {
  const client = useQueryClient();
  const query = useQuery({
    queryKey: ['failures', 'dead-letters'],
    queryFn: () =>
      api<{ deadLetters: DeadLetter[] }>('/v1/dead-letters?limit=200').then((r) => r.deadLetters),
  });
  const refresh = () => void client.invalidateQueries({ queryKey: ['failures'] });
  return (
    <>
      <h1>Dead letters</h1>
      <ErrorBox error={query.error} />
      {query.data === undefined ? <Loading what="dead letters" /> : null}
      {query.data?.length === 0 ? <p>No dead letters.</p> : null}
      {query.data?.map((d) => (
        <article key={d.id} className="card" aria-label={`Dead letter of ${d.module}`}>
          <h2>
            <Link to={`/jobs/${encodeURIComponent(d.jobId)}`}>{d.module}</Link> · {d.attempts}{' '}
            attempt(s) · {time(d.createdAt)}
          </h2>
          <p className="wrap">{d.reason}</p>
          <details>
            <summary>Log tail</summary>
            <pre className="code">{d.logTail}</pre>
          </details>
          <div className="actions">
            <ActionButton
              label="Redrive"
              action={() =>
                api(`/v1/dead-letters/${encodeURIComponent(d.id)}/redrive`, { method: 'POST' })
              }
              onDone={refresh}
            />
            <ActionButton
              label="Discard"
              action={() =>
                api(`/v1/dead-letters/${encodeURIComponent(d.id)}`, { method: 'DELETE' })
              }
              onDone={refresh}
            />
          </div>
        </article>
      ))}
    </>
  );
}
