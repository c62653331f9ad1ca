import { useEffect, useRef, useState } from 'react';
import { raw } from '../lib/api.js';

/**
 * The log of one attempt: followed live while it runs (`?follow=true`, which switches to the
 * kept log when the attempt ends, so the end is never missed), read whole once it has ended.
 * It never goes blank: text already shown stays until new text replaces it. Rendered as text.
 */

const MAX_CHARS = 2_000_000;

export function LogView(props: {
  jobId: string;
  attempt: number;
  running: boolean;
  onEnd?: () => void;
}) {
  const [text, setText] = useState('');
  const [state, setState] = useState<'loading' | 'following' | 'done' | 'error'>('loading');
  const [error, setError] = useState<string | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  const onEnd = useRef(props.onEnd);
  onEnd.current = props.onEnd;

  useEffect(() => {
    const abort = new AbortController();
    const base = `/v1/jobs/${encodeURIComponent(props.jobId)}/logs?attempt=${props.attempt}`;
    const run = async () => {
      setState(props.running ? 'following' : 'loading');
      const res = await raw(props.running ? `${base}&follow=true` : base, { signal: abort.signal });
      if (res.body === null) return;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let acc = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        acc += value;
        if (acc.length > MAX_CHARS) acc = `[earlier output not shown]\n${acc.slice(-MAX_CHARS)}`;
        setText(acc);
      }
      setState('done');
      if (props.running) onEnd.current?.();
    };
    run().catch((err: unknown) => {
      if (abort.signal.aborted) return;
      setError(err instanceof Error ? err.message : String(err));
      setState('error');
    });
    return () => abort.abort();
  }, [props.jobId, props.attempt, props.running]);

  useEffect(() => {
    const el = pre.current;
    if (el !== null && state === 'following') el.scrollTop = el.scrollHeight;
  }, [text, state]);

  return (
    <div className="log">
      <p className="muted" role="status">
        {state === 'following'
          ? 'Following the log live…'
          : state === 'loading'
            ? 'Loading the log…'
            : state === 'done'
              ? `Log of attempt ${props.attempt} (${text.length} characters).`
              : null}
      </p>
      {error === null ? null : (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <pre
        ref={pre}
        className="code log-text"
        tabIndex={0}
        aria-label={`Log of attempt ${props.attempt}`}
        data-testid="log"
      >
        {text === '' && state === 'done' ? '(the attempt wrote nothing)' : text}
      </pre>
    </div>
  );
}
