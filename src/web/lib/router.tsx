import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

/**
 * A small router over the History API: the app's pages live under `/ui/...`, and filters live
 * in the query string so a view can be shared by its URL.
 */

export const BASE = '/ui';

const listeners = new Set<() => void>();
function subscribe(fn: () => void): () => void {
  listeners.add(fn);
  window.addEventListener('popstate', fn);
  return () => {
    listeners.delete(fn);
    window.removeEventListener('popstate', fn);
  };
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const url = to.startsWith(BASE) ? to : `${BASE}${to}`;
  if (options.replace === true) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  for (const fn of listeners) fn();
}

function snapshot(): string {
  return `${location.pathname}${location.search}`;
}

/** The current path below `/ui` (always starting with `/`) and its query parameters. */
export function useLocation(): { path: string; search: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, snapshot, snapshot);
  const [pathname, query = ''] = href.split('?');
  const below = pathname!.startsWith(BASE) ? pathname!.slice(BASE.length) : pathname!;
  return { path: below === '' ? '/' : below, search: new URLSearchParams(query) };
}

/** Replaces the query string (keeps the path), dropping empty values. */
export function setSearch(params: Record<string, string | undefined>): void {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') search.set(k, v);
  const s = search.toString();
  navigate(`${location.pathname}${s === '' ? '' : `?${s}`}`, { replace: true });
}

export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { to: string }) {
  const { to, onClick, ...rest } = props;
  const href = `${BASE}${to}`;
  const click = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(href);
  };
  return <a {...rest} href={href} onClick={click} />;
}
