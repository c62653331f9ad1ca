import { useQueryClient, type QueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import type { IonEvent, Job } from './api.js';
import { openStream, type StreamMessage } from './sse.js';

/**
 * One live stream for the whole app. Each change refreshes the queries it affects (throttled,
 * so a burst of a thousand jobs costs one refetch per query, not a thousand), and the recent
 * changes are kept for the live activity page. No page polls.
 */

export interface LiveItem {
  seq: number;
  kind: 'job' | 'event';
  job?: Job;
  event?: IonEvent;
  at: number;
}

interface LiveState {
  status: string;
  items: LiveItem[];
  /** Subscribe to every message (the trace page merges them into its graph). */
  listen(fn: (item: LiveItem) => void): () => void;
}

const LiveContext = createContext<LiveState>({
  status: 'stopped',
  items: [],
  listen: () => () => {},
});

export const KEEP = 500;

/** Which cached queries a change makes stale. */
export function staleKeys(item: LiveItem): unknown[][] {
  if (item.kind === 'job' && item.job !== undefined) {
    const j = item.job;
    return [
      ['job', j.jobId],
      ['trace', j.correlationId],
      ['jobs'],
      ['counts'],
      ['failures'],
      ['replay'],
    ];
  }
  if (item.kind === 'event' && item.event !== undefined)
    return [['trace', item.event.correlationId], ['events']];
  return [];
}

function throttledInvalidator(client: QueryClient, waitMs: number) {
  const pending = new Map<string, unknown[]>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  return {
    add(keys: unknown[][]) {
      for (const key of keys) pending.set(JSON.stringify(key), key);
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        const keys = [...pending.values()];
        pending.clear();
        for (const queryKey of keys) void client.invalidateQueries({ queryKey });
      }, waitMs);
    },
    stop() {
      if (timer !== null) clearTimeout(timer);
    },
  };
}

export function LiveProvider(props: { children: ReactNode; enabled: boolean }) {
  const client = useQueryClient();
  const [status, setStatus] = useState('connecting');
  const [items, setItems] = useState<LiveItem[]>([]);
  const listeners = useRef(new Set<(item: LiveItem) => void>());
  const seq = useRef(0);

  useEffect(() => {
    if (!props.enabled) return;
    const invalidator = throttledInvalidator(client, 700);
    let batch: LiveItem[] = [];
    let flush: ReturnType<typeof setTimeout> | null = null;
    const onMessage = (message: StreamMessage) => {
      if (message.event !== 'job' && message.event !== 'event') return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return;
      }
      const item: LiveItem = {
        seq: ++seq.current,
        kind: message.event,
        at: Date.now(),
        ...(message.event === 'job' ? { job: parsed as Job } : { event: parsed as IonEvent }),
      };
      invalidator.add(staleKeys(item));
      for (const fn of listeners.current) fn(item);
      batch.push(item);
      flush ??= setTimeout(() => {
        flush = null;
        const added = batch.reverse();
        batch = [];
        setItems((old) => [...added, ...old].slice(0, KEEP));
      }, 200);
    };
    const stop = openStream({
      onMessage,
      onStatus: (s, detail) => setStatus(detail === undefined ? s : `${s}: ${detail}`),
      onReset: () => void client.invalidateQueries(),
    });
    return () => {
      stop();
      invalidator.stop();
      if (flush !== null) clearTimeout(flush);
    };
  }, [client, props.enabled]);

  const value: LiveState = {
    status,
    items,
    listen: (fn) => {
      listeners.current.add(fn);
      return () => listeners.current.delete(fn);
    },
  };
  return <LiveContext.Provider value={value}>{props.children}</LiveContext.Provider>;
}

export function useLive(): LiveState {
  return useContext(LiveContext);
}
