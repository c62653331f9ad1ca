import { useState, type ReactNode } from 'react';
import { ApiError, download, type FileRef, type JobState, type KeyValue } from '../lib/api.js';
import { bytes } from '../lib/format.js';

/**
 * Small building blocks. Everything a module wrote (metadata, insight values, file names,
 * logs, error messages) is rendered as React text, never as markup.
 */

export function StateBadge(props: {
  state: JobState | 'paused' | 'succeeded' | 'failed' | 'running';
}) {
  return <span className={`badge state-${props.state}`}>{props.state.replace('_', ' ')}</span>;
}

export function ErrorBox(props: { error: unknown }) {
  if (props.error === null || props.error === undefined) return null;
  const message =
    props.error instanceof ApiError
      ? `${props.error.message} (${props.error.code})`
      : props.error instanceof Error
        ? props.error.message
        : JSON.stringify(props.error);
  return (
    <p className="error" role="alert">
      {message}
    </p>
  );
}

export function Loading(props: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {props.what}…
    </p>
  );
}

export function KeyValues(props: { items: KeyValue[]; caption: string }) {
  if (props.items.length === 0) return <p className="muted">No {props.caption.toLowerCase()}.</p>;
  return (
    <table className="kv">
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">Key</th>
          <th scope="col">Value</th>
        </tr>
      </thead>
      <tbody>
        {props.items.map((kv, i) => (
          <tr key={`${kv.key}-${i}`}>
            <td>
              <code>{kv.key}</code>
            </td>
            <td className="wrap">{kv.value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function DownloadButton(props: { file: FileRef }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const name = props.file.path;
  return (
    <>
      <button
        type="button"
        className="link"
        disabled={busy}
        aria-label={`Download ${name}`}
        onClick={() => {
          setBusy(true);
          download(props.file)
            .catch(setError)
            .finally(() => setBusy(false));
        }}
      >
        {name}
      </button>
      {error === null ? null : <ErrorBox error={error} />}
    </>
  );
}

export function FileList(props: { files: FileRef[]; caption: string }) {
  if (props.files.length === 0) return <p className="muted">No {props.caption.toLowerCase()}.</p>;
  return (
    <table className="kv">
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          <th scope="col">File</th>
          <th scope="col">Size</th>
          <th scope="col">SHA-256</th>
        </tr>
      </thead>
      <tbody>
        {props.files.map((f) => (
          <tr key={`${f.path}-${f.sha256}`}>
            <td>
              <DownloadButton file={f} />
            </td>
            <td>{bytes(f.size)}</td>
            <td>
              <code title={f.sha256}>{f.sha256.slice(0, 12)}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A button that runs an action, shows it is busy and shows its error. */
export function ActionButton(props: {
  label: string;
  action: () => Promise<unknown>;
  onDone?: (result: unknown) => void;
  className?: string;
  disabled?: boolean;
  children?: ReactNode;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <span className="action">
      <button
        type="button"
        className={props.className}
        disabled={busy || props.disabled === true}
        onClick={() => {
          setBusy(true);
          setError(null);
          props
            .action()
            .then((r) => props.onDone?.(r))
            .catch(setError)
            .finally(() => setBusy(false));
        }}
      >
        {props.children ?? props.label}
      </button>
      {error === null ? null : <ErrorBox error={error} />}
    </span>
  );
}
