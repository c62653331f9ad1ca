import { StateBadge } from '../components/common.js';
import { shortId } from '../lib/format.js';
import { useLive } from '../lib/live.js';
import { Link } from '../lib/router.js';

/**
 * Job and event changes as they happen, from the one live stream (`/v1/stream`, resumed with
 * `Last-Event-ID` after a drop). Newest first; the last few hundred are kept.
 */
export function LivePage() {
  const { items, status } = useLive();
  return (
    <>
      <h1>Live activity</h1>
      <p className="muted">
        Stream: {status}. Changes appear as they happen; {items.length} shown.
      </p>
      {items.length === 0 ? (
        <p>Nothing has happened since this page opened. Publish an event to see it here.</p>
      ) : null}
      <ol className="feed" aria-label="Recent changes" aria-live="off">
        {items.map((item) =>
          item.kind === 'job' && item.job !== undefined ? (
            <li key={item.seq} className="feed-item" data-kind="job">
              <span className="time">{new Date(item.at).toLocaleTimeString()}</span> job{' '}
              <Link to={`/jobs/${encodeURIComponent(item.job.jobId)}`}>
                {item.job.module} {shortId(item.job.jobId)}
              </Link>{' '}
              <StateBadge state={item.job.state} /> attempt {item.job.attempts} ·{' '}
              <Link to={`/traces/${encodeURIComponent(item.job.correlationId)}`}>trace</Link>
            </li>
          ) : item.event !== undefined ? (
            <li key={item.seq} className="feed-item" data-kind="event">
              <span className="time">{new Date(item.at).toLocaleTimeString()}</span> event{' '}
              <strong>{item.event.type}</strong> from {item.event.source} ·{' '}
              {item.event.files.length} file(s) ·{' '}
              <Link to={`/traces/${encodeURIComponent(item.event.correlationId)}`}>
                trace {shortId(item.event.correlationId)}
              </Link>
            </li>
          ) : null,
        )}
      </ol>
    </>
  );
}
