import { useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useEffect, useState, type ReactNode } from 'react';
import { ApiError, api, getToken, onUnauthorized, setToken } from './lib/api.js';
import { LiveProvider, useLive } from './lib/live.js';
import { Link, useLocation } from './lib/router.js';
import { LoginPage } from './pages/login.js';
import { LivePage } from './pages/live.js';
import { JobsPage } from './pages/jobs.js';
import { JobPage } from './pages/job-detail.js';
import { FailuresPage } from './pages/failures.js';
import { InsightsPage } from './pages/insights.js';
import { PublishPage } from './pages/publish.js';
import { ReplaysPage } from './pages/replays.js';
import { DeadLettersPage } from './pages/dead-letters.js';
import { TokensPage } from './pages/tokens.js';

// The graph pages carry React Flow and ELK (most of the bundle): loaded when first opened,
// so the jobs page and the rest start without them.
const PipelinePage = lazy(() =>
  import('./pages/pipeline.js').then((m) => ({ default: m.PipelinePage })),
);
const ModulePage = lazy(() =>
  import('./pages/pipeline.js').then((m) => ({ default: m.ModulePage })),
);
const TracePage = lazy(() => import('./pages/trace.js').then((m) => ({ default: m.TracePage })));

const NAV: [string, string][] = [
  ['/', 'Pipeline'],
  ['/live', 'Live'],
  ['/jobs', 'Jobs'],
  ['/failures', 'Failures'],
  ['/traces', 'Traces'],
  ['/insights', 'Insights'],
  ['/publish', 'Publish'],
  ['/replays', 'Replays'],
  ['/dead-letters', 'Dead letters'],
  ['/tokens', 'Tokens'],
];

/** Picks the page for a path below /ui. */
export function route(path: string): ReactNode {
  const parts = path
    .split('/')
    .filter((p) => p !== '')
    .map(decodeURIComponent);
  const [page, id] = parts;
  switch (page) {
    case undefined:
      return <PipelinePage />;
    case 'modules':
      return id === undefined ? <PipelinePage /> : <ModulePage name={id} />;
    case 'live':
      return <LivePage />;
    case 'jobs':
      return id === undefined ? <JobsPage /> : <JobPage jobId={id} />;
    case 'traces':
      return <TracePage correlationId={id} />;
    case 'failures':
      return <FailuresPage />;
    case 'insights':
      return <InsightsPage />;
    case 'publish':
      return <PublishPage />;
    case 'replays':
      return <ReplaysPage replayId={id} />;
    case 'dead-letters':
      return <DeadLettersPage />;
    case 'tokens':
      return <TokensPage />;
    default:
      return <p>No page here. Pick one from the menu.</p>;
  }
}

function LiveStatus() {
  const { status } = useLive();
  const live = status === 'live';
  return (
    <span className={`live-status ${live ? 'on' : 'off'}`} role="status" aria-live="polite">
      {live ? '● live' : `○ ${status}`}
    </span>
  );
}

export function App() {
  const { path } = useLocation();
  const client = useQueryClient();
  // null: not known yet; true: the API wants a token we do not have (or ours was refused).
  const [needsToken, setNeedsToken] = useState<boolean | null>(null);

  useEffect(() => {
    const off = onUnauthorized(() => setNeedsToken(true));
    api('/v1/modules')
      .then(() => setNeedsToken(false))
      .catch((err: unknown) => setNeedsToken(err instanceof ApiError && err.status === 401));
    return () => void off();
  }, []);

  useEffect(() => {
    const title = NAV.find(([to]) => to !== '/' && path.startsWith(to))?.[1] ?? 'Pipeline';
    document.title = `${title} · Ion`;
  }, [path]);

  if (needsToken === null) return <p role="status">Connecting to Ion…</p>;
  if (needsToken)
    return (
      <LoginPage
        onToken={(token) => {
          setToken(token);
          client.clear();
          setNeedsToken(false);
        }}
      />
    );

  const current = (to: string) =>
    to === '/' ? path === '/' || path.startsWith('/modules') : path.startsWith(to);
  return (
    <LiveProvider enabled={!needsToken}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Ion</span>
        <nav aria-label="Pages">
          <ul>
            {NAV.map(([to, label]) => (
              <li key={to}>
                <Link to={to} aria-current={current(to) ? 'page' : undefined}>
                  {label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <LiveStatus />
        {getToken() === null ? null : (
          <button
            type="button"
            className="link"
            onClick={() => {
              setToken(null);
              client.clear();
              setNeedsToken(true);
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p role="status">Loading the page…</p>}>{route(path)}</Suspense>
      </main>
    </LiveProvider>
  );
}
