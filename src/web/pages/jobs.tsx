import { useInfiniteQuery } from '@tanstack/react-query';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { ErrorBox, Loading, StateBadge } from '../components/common.js';
import { api, JOB_STATES, qs, type Job } from '../lib/api.js';
import { ago, localToIso, shortId } from '../lib/format.js';
import { Link, navigate, setSearch, useLocation } from '../lib/router.js';

/**
 * Jobs, most recently changed first, a page at a time from the server (cursor pagination:
 * never all jobs), drawn with a virtualised list so only the visible rows exist in the page.
 * Filters live in the URL, so a view can be shared.
 */

const PAGE = 100;
const ROW = 38;
const FILTERS = [
  'module',
  'state',
  'since',
  'until',
  'insightKey',
  'insightValue',
  'correlationId',
] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

function readFilters(search: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of FILTERS) {
    const v = search.get(k);
    if (v !== null && v !== '') f[k] = v;
  }
  return f;
}

function FilterForm(props: { filters: Filters }) {
  const [draft, setDraft] = useState<Filters>(props.filters);
  useEffect(() => setDraft(props.filters), [props.filters]);
  const field = (k: keyof Filters, label: string, type = 'text') => (
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
    <form className="filters" onSubmit={submit} aria-label="Job filters">
      {field('module', 'Module')}
      <label>
        State
        <select
          name="state"
          value={draft.state ?? ''}
          onChange={(e) => setDraft({ ...draft, state: e.target.value })}
        >
          <option value="">any</option>
          {JOB_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      {field('since', 'Changed since', 'datetime-local')}
      {field('until', 'Changed before', 'datetime-local')}
      {field('insightKey', 'Insight key')}
      {field('insightValue', 'Insight value')}
      {field('correlationId', 'Correlation id')}
      <button type="submit">Apply filters</button>
      <button type="button" onClick={() => setSearch({})}>
        Clear
      </button>
    </form>
  );
}

export function JobsPage() {
  const { search } = useLocation();
  const filters = readFilters(search);
  const key = JSON.stringify(filters);
  const query = useInfiniteQuery({
    queryKey: ['jobs', key],
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      api<{ jobs: Job[]; nextCursor: string | null }>(
        `/v1/dashboard/jobs${qs({
          ...filters,
          since: filters.since === undefined ? undefined : localToIso(filters.since),
          until: filters.until === undefined ? undefined : localToIso(filters.until),
          limit: PAGE,
          cursor: pageParam,
        })}`,
      ),
    getNextPageParam: (last) => last.nextCursor,
    // A live refresh refetches the loaded pages; cap it so a long scroll stays cheap.
    maxPages: 20,
  });
  const jobs = query.data?.pages.flatMap((p) => p.jobs) ?? [];
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: jobs.length + (query.hasNextPage ? 1 : 0),
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW,
    overscan: 10,
  });
  const items = virtual.getVirtualItems();
  const lastIndex = items.at(-1)?.index ?? 0;
  useEffect(() => {
    if (lastIndex >= jobs.length - 1 && query.hasNextPage && !query.isFetchingNextPage)
      void query.fetchNextPage();
  }, [lastIndex, jobs.length, query]);

  return (
    <>
      <h1>Jobs</h1>
      <FilterForm filters={filters} />
      <ErrorBox error={query.error} />
      {query.isPending ? <Loading what="jobs" /> : null}
      {!query.isPending && jobs.length === 0 ? <p>No jobs match these filters.</p> : null}
      <div
        className="vtable"
        role="table"
        aria-label="Jobs"
        aria-rowcount={query.hasNextPage ? -1 : jobs.length + 1}
      >
        <div role="rowgroup">
          <div role="row" className="vrow head" aria-rowindex={1}>
            <span role="columnheader">Job</span>
            <span role="columnheader">Module</span>
            <span role="columnheader">State</span>
            <span role="columnheader">Attempts</span>
            <span role="columnheader">Changed</span>
            <span role="columnheader">Last error</span>
          </div>
        </div>
        <div
          ref={scroller}
          className="vscroll"
          role="rowgroup"
          tabIndex={0}
          aria-label="Job rows (scroll for more)"
        >
          <div style={{ height: virtual.getTotalSize(), position: 'relative' }}>
            {items.map((item) => {
              const job = jobs[item.index];
              const style = {
                position: 'absolute' as const,
                top: 0,
                left: 0,
                right: 0,
                height: ROW,
                transform: `translateY(${item.start}px)`,
              };
              if (job === undefined)
                return (
                  <div
                    key="more"
                    role="row"
                    className="vrow"
                    style={style}
                    aria-rowindex={item.index + 2}
                  >
                    <span role="cell">Loading more…</span>
                  </div>
                );
              return (
                <div
                  key={job.jobId}
                  role="row"
                  className="vrow"
                  style={style}
                  aria-rowindex={item.index + 2}
                  data-job-id={job.jobId}
                  onDoubleClick={() => navigate(`/jobs/${encodeURIComponent(job.jobId)}`)}
                >
                  <span role="cell">
                    <Link to={`/jobs/${encodeURIComponent(job.jobId)}`}>{shortId(job.jobId)}</Link>
                  </span>
                  <span role="cell">{job.module}</span>
                  <span role="cell">
                    <StateBadge state={job.state} />
                  </span>
                  <span role="cell">{job.attempts}</span>
                  <span role="cell" title={job.updatedAt}>
                    {ago(job.updatedAt)}
                  </span>
                  <span role="cell" className="ellipsis" title={job.lastError ?? ''}>
                    {job.lastError ?? ''}
                  </span>
                </div>
              );
            })}
          </div>
        </div>
      </div>
      <p className="muted">
        {jobs.length} loaded{query.hasNextPage ? '; scroll for more' : ''}.
      </p>
    </>
  );
}
