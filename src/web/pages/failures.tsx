import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ActionButton, ErrorBox, Loading } from '../components/common.js';
import { api } from '../lib/api.js';
import { ago, time } from '../lib/format.js';
import { Link } from '../lib/router.js';

/**
 * Failed and dead-lettered jobs grouped by module, failure kind and a fingerprint of the
 * reason (ids, numbers, paths and quoted values normalised away), with first/last seen and a
 * count. A whole group is redriven or replayed in one action, after a preview of what it
 * will touch.
 */

// The API's shape, type-only: nothing of the server is bundled.
export type { FailureGroup } from '../../api/failure-groups.js';
import type { FailureGroup } from '../../api/failure-groups.js';

interface ActResult {
  action: string;
  dryRun: boolean;
  jobIds: string[];
  touched: number;
}

function GroupAction(props: { group: FailureGroup; action: 'redrive' | 'replay' }) {
  const client = useQueryClient();
  const [preview, setPreview] = useState<ActResult | null>(null);
  const [done, setDone] = useState<ActResult | null>(null);
  const body = {
    module: props.group.module,
    fingerprint: props.group.fingerprint,
    action: props.action,
  };
  const verb = props.action === 'redrive' ? 'Redrive' : 'Replay';
  if (done !== null)
    return (
      <p role="status">
        {verb === 'Redrive' ? 'Redrove' : 'Replayed'} {done.touched} job(s).
      </p>
    );
  if (preview === null)
    return (
      <ActionButton
        label={`${verb} group…`}
        action={() =>
          api<ActResult>('/v1/dashboard/failures/act', { json: { ...body, dryRun: true } })
        }
        onDone={(r) => setPreview(r as ActResult)}
      />
    );
  return (
    <div className="preview" role="group" aria-label={`${verb} preview`}>
      <p>
        {verb} will touch {preview.jobIds.length} job(s)
        {preview.jobIds.length === 0 && props.action === 'redrive'
          ? ' (none is dead-lettered: failed jobs retry by themselves)'
          : ''}
        :
      </p>
      <ul className="compact">
        {preview.jobIds.slice(0, 10).map((id) => (
          <li key={id}>
            <Link to={`/jobs/${encodeURIComponent(id)}`}>
              <code>{id}</code>
            </Link>
          </li>
        ))}
        {preview.jobIds.length > 10 ? <li>… and {preview.jobIds.length - 10} more</li> : null}
      </ul>
      <ActionButton
        label={`Confirm ${verb.toLowerCase()} of ${preview.jobIds.length}`}
        disabled={preview.jobIds.length === 0}
        action={() => api<ActResult>('/v1/dashboard/failures/act', { json: body })}
        onDone={(r) => {
          setDone(r as ActResult);
          void client.invalidateQueries({ queryKey: ['failures'] });
        }}
      />
      <button type="button" onClick={() => setPreview(null)}>
        Cancel
      </button>
    </div>
  );
}

export function FailuresPage() {
  const query = useQuery({
    queryKey: ['failures'],
    queryFn: () => api<{ groups: FailureGroup[] }>('/v1/dashboard/failures').then((r) => r.groups),
  });
  return (
    <>
      <h1>Failures</h1>
      <ErrorBox error={query.error} />
      {query.data === undefined ? <Loading what="failures" /> : null}
      {query.data?.length === 0 ? <p>No failed or dead-lettered jobs. 🎉</p> : null}
      {query.data?.map((g) => (
        <article
          key={`${g.module}-${g.fingerprint}`}
          className="card failure-group"
          aria-label={`Failures of ${g.module}`}
        >
          <h2>
            <Link to={`/jobs?module=${encodeURIComponent(g.module)}&state=dead_lettered`}>
              {g.module}
            </Link>{' '}
            <span className="badge">{g.kind ?? 'unknown'} failure</span>{' '}
            <span className="badge">×{g.count}</span>
          </h2>
          <pre className="code reason">
            {g.reason}
            {g.logLine === '' ? '' : `\nlast log line: ${g.logLine}`}
          </pre>
          <p className="muted">
            {g.states.dead_lettered} dead-lettered · {g.states.failed} retrying · first seen{' '}
            {time(g.firstSeen)} · last seen {ago(g.lastSeen)} · fingerprint{' '}
            <code>{g.fingerprint}</code>
          </p>
          <div className="actions">
            <GroupAction group={g} action="redrive" />
            <GroupAction group={g} action="replay" />
          </div>
        </article>
      ))}
    </>
  );
}
