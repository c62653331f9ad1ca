// @vitest-environment happy-dom
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { cleanup, render, screen } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, describe, expect, it } from 'vitest';
import { FileList, KeyValues, StateBadge } from '../components/common.js';
import type { IonEvent, Job, Trace } from '../lib/api.js';
import { LivePage } from '../pages/live.js';
import { buildTraceGraph, FANOUT_LIMIT, FANOUT_PAGE } from '../lib/trace-graph.js';
import { parseSse } from '../lib/sse.js';
import { route } from '../app.js';
import { hasParams } from '../pages/insights.js';

/** Payloads a module could write: none may become markup or run. */
const HOSTILE = [
  '<img src=x onerror="globalThis.__pwned=1">',
  '<script>globalThis.__pwned=2</script>',
  '"><svg onload=alert(1)>',
  'javascript:alert(1)',
];

afterEach(cleanup);

function wrap(node: ReactNode) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(<QueryClientProvider client={client}>{node}</QueryClientProvider>);
}

function noMarkup(container: HTMLElement) {
  expect(container.querySelectorAll('img, script, svg, iframe').length).toBe(0);
  expect((globalThis as { __pwned?: number }).__pwned).toBeUndefined();
}

describe('rendering what modules wrote', () => {
  it('shows hostile metadata keys and values as text', () => {
    const items = HOSTILE.map((value, i) => ({ key: `${value}-${i}`, value }));
    const { container } = render(<KeyValues items={items} caption="Metadata" />);
    for (const value of HOSTILE)
      expect(screen.getAllByText(value, { exact: false }).length).toBeGreaterThan(0);
    noMarkup(container);
  });

  it('shows hostile file names as text on download buttons', () => {
    const files = HOSTILE.map((path, i) => ({
      path,
      sha256: `${i}`.repeat(64).slice(0, 64),
      size: 10,
    }));
    const { container } = render(<FileList files={files} caption="Files" />);
    for (const path of HOSTILE)
      expect(screen.getByRole('button', { name: `Download ${path}` })).toBeTruthy();
    noMarkup(container);
    expect(container.querySelectorAll('a[href^="javascript"]').length).toBe(0);
  });

  it('shows a state badge with a readable label', () => {
    render(<StateBadge state="dead_lettered" />);
    expect(screen.getByText('dead lettered')).toBeTruthy();
  });

  it('routes unknown paths to a plain message, not an error', () => {
    const { container } = wrap(<>{route('/no-such-page')}</>);
    expect(container.textContent).toContain('No page here');
  });

  it('renders the live page empty state without a stream', () => {
    const { container } = wrap(<LivePage />);
    expect(container.textContent).toContain('Nothing has happened');
  });
});

const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n)).toISOString();

function event(id: string, parent: string | null, job: string | null, type = 't'): IonEvent {
  return {
    eventId: id,
    type,
    correlationId: 'c',
    parentEventId: parent,
    source: job === null ? 'api' : 'm',
    sourceJobId: job,
    metadata: [],
    files: [],
    createdAt: at(id.length),
  };
}

function job(id: string, eventId: string, module: string): Job {
  return {
    jobId: id,
    module,
    moduleVersion: 1,
    eventId,
    correlationId: 'c',
    state: 'succeeded',
    attempts: 1,
    createdAt: at(1),
    updatedAt: at(1),
    finishedAt: at(1),
    lastError: null,
    outputs: [],
    replayId: null,
    replayOf: null,
    pinnedVersion: null,
    cancelRequestedAt: null,
  };
}

/** root → split job → n chunk events → one count job each. */
function fanout(n: number): Trace {
  const events = [event('root', null, null)];
  const jobs = [job('split', 'root', 'splitter')];
  for (let i = 0; i < n; i++) {
    events.push(event(`e${i}`, 'root', 'split', 'chunk'));
    jobs.push(job(`j${i}`, `e${i}`, 'count'));
  }
  return { correlationId: 'c', events, jobs, insights: [] };
}

describe('the trace graph', () => {
  it('draws a small fan-out in full, every child below its parent job', () => {
    const g = buildTraceGraph(fanout(3));
    expect(g.nodes.filter((n) => n.kind === 'event')).toHaveLength(4);
    expect(g.nodes.filter((n) => n.kind === 'job')).toHaveLength(4);
    expect(g.edges).toHaveLength(7);
    const split = g.nodes.find((n) => n.id === 'split')!;
    const children = g.nodes.filter((n) => n.kind === 'event' && n.id !== 'root');
    expect(children.every((c) => c.x > split.x)).toBe(true);
    expect(g.hidden).toBe(0);
  });

  it('collapses a fan-out over the limit into one node with counts, and opens it on request', () => {
    const trace = fanout(FANOUT_LIMIT + 10);
    const collapsed = buildTraceGraph(trace);
    const group = collapsed.nodes.find((n) => n.kind === 'group');
    expect(group).toMatchObject({
      count: FANOUT_LIMIT + 10,
      states: { succeeded: FANOUT_LIMIT + 10 },
    });
    expect(collapsed.nodes).toHaveLength(3);
    expect(collapsed.hidden).toBe(FANOUT_LIMIT + 10);
    const open = buildTraceGraph(trace, new Map([['split', FANOUT_PAGE]]));
    expect(open.nodes).toHaveLength(2 + 2 * (FANOUT_LIMIT + 10));
    expect(open.hidden).toBe(0);
  });

  it('opens a huge fan-out a page at a time, the rest staying one counted node', () => {
    const trace = fanout(1000);
    const once = buildTraceGraph(trace, new Map([['split', FANOUT_PAGE]]));
    expect(once.nodes.filter((n) => n.kind === 'event')).toHaveLength(1 + FANOUT_PAGE);
    expect(once.nodes.find((n) => n.kind === 'group')).toMatchObject({
      shown: FANOUT_PAGE,
      count: 1000 - FANOUT_PAGE,
    });
    expect(once.hidden).toBe(1000 - FANOUT_PAGE);
  });

  it('lays out 2,000 events quickly', () => {
    const trace = fanout(2000);
    const started = performance.now();
    const g = buildTraceGraph(trace, new Map([['split', 2000]]));
    expect(g.nodes).toHaveLength(4002);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('the insight query', () => {
  it('turns "same job has" pairs into repeated has parameters', () => {
    expect(hasParams('label=car, colour=red , junk')).toBe('&has=label%3Dcar&has=colour%3Dred');
    expect(hasParams(undefined)).toBe('');
  });
});

describe('the live stream parser', () => {
  it('parses messages, ids and keeps a partial message for later', () => {
    const text = 'retry: 2000\nid: a\n: connected\n\nevent: job\nid: b\ndata: {"x":1}\n\nevent: ev';
    const { messages, ids, rest } = parseSse(text);
    expect(ids).toEqual(['a', 'b']);
    expect(messages).toEqual([{ event: 'job', data: '{"x":1}', id: 'b' }]);
    expect(rest).toBe('event: ev');
  });
});
