import { useQuery } from '@tanstack/react-query';
import { useEffect, useState, type FormEvent } from 'react';
import { DownloadButton, ErrorBox, Loading } from '../components/common.js';
import { api, qs, type FileRef, type Insight } from '../lib/api.js';
import { localToIso, time } from '../lib/format.js';
import { Link, setSearch, useLocation } from '../lib/router.js';

/**
 * Insight queries: module, key, value (exact) or prefix, time. Each hit links its event's
 * trace, its job and its files. "Which videos have a red car?" is `has: label=car, colour=red`
 * (one detection job recorded both), or `key=object value=red car` where one insight says it.
 */

type Hit = Insight & {
  event: { eventId: string; type: string; files: (FileRef & { href: string })[] };
};
const FIELDS = ['module', 'key', 'value', 'valuePrefix', 'has', 'since', 'until'] as const;
type Form = Partial<Record<(typeof FIELDS)[number], string>>;

/** `label=car, colour=red` → `&has=label%3Dcar&has=colour%3Dred` (one job recorded every pair). */
export function hasParams(has: string | undefined): string {
  if (has === undefined) return '';
  const pairs = has
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.includes('='));
  return pairs.map((p) => `&has=${encodeURIComponent(p)}`).join('');
}

export function InsightsPage() {
  const { search } = useLocation();
  const current: Form = {};
  for (const f of FIELDS) {
    const v = search.get(f);
    if (v !== null && v !== '') current[f] = v;
  }
  const key = JSON.stringify(current);
  const [draft, setDraft] = useState<Form>(current);
  useEffect(() => setDraft(JSON.parse(key) as Form), [key]);
  const asked = Object.keys(current).length > 0;
  const query = useQuery({
    queryKey: ['insights', key],
    enabled: asked,
    queryFn: () =>
      api<{ insights: Hit[] }>(
        `/v1/insights${qs({
          ...current,
          has: undefined,
          since: current.since === undefined ? undefined : localToIso(current.since),
          until: current.until === undefined ? undefined : localToIso(current.until),
          limit: 500,
        })}${hasParams(current.has)}`,
      ).then((r) => r.insights),
  });
  const field = (k: keyof Form, label: string, type = 'text') => (
    <label>
      {label}
      <input
        name={k}
        type={type}
        value={draft[k] ?? ''}
        onChange={(e) => setDraft({ ...draft, [k]: e.target.value })}
      />
    </label>
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setSearch(draft);
  };
  return (
    <>
      <h1>Insights</h1>
      <form className="filters" onSubmit={submit} aria-label="Insight query">
        {field('module', 'Module')}
        {field('key', 'Key')}
        {field('value', 'Value (exact)')}
        {field('valuePrefix', 'Value starts with')}
        {field('has', 'Same job has (key=value, …)')}
        {field('since', 'Since', 'datetime-local')}
        {field('until', 'Until', 'datetime-local')}
        <button type="submit">Search</button>
      </form>
      <ErrorBox error={query.error} />
      {asked && query.isPending ? <Loading what="insights" /> : null}
      {query.data === undefined ? null : (
        <table className="list">
          <caption>{query.data.length} hit(s)</caption>
          <thead>
            <tr>
              <th scope="col">Module</th>
              <th scope="col">Key</th>
              <th scope="col">Value</th>
              <th scope="col">Event</th>
              <th scope="col">Files</th>
              <th scope="col">When</th>
            </tr>
          </thead>
          <tbody>
            {query.data.map((h, i) => (
              <tr key={`${h.jobId}-${h.key}-${i}`}>
                <td>
                  <Link to={`/jobs/${encodeURIComponent(h.jobId)}`}>{h.module}</Link>
                </td>
                <td>
                  <code>{h.key}</code>
                </td>
                <td className="wrap">{h.value}</td>
                <td>
                  <Link to={`/traces/${encodeURIComponent(h.correlationId)}`}>{h.event.type}</Link>
                </td>
                <td>
                  {h.event.files.map((f) => (
                    <div key={f.path}>
                      <DownloadButton file={f} />
                    </div>
                  ))}
                </td>
                <td>{time(h.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
