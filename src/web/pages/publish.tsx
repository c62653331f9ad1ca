import { useState, type FormEvent } from 'react';
import { ErrorBox } from '../components/common.js';
import { api, raw } from '../lib/api.js';
import { bytes } from '../lib/format.js';
import { navigate } from '../lib/router.js';

/**
 * Publishes a root event: its type, ordered metadata and uploaded files (each streamed to
 * `PUT /v1/blobs`, then referenced by hash), then opens its trace to follow it live.
 */

interface Row {
  key: string;
  value: string;
}

export function PublishPage() {
  const [type, setType] = useState('document.uploaded');
  const [rows, setRows] = useState<Row[]>([{ key: 'source', value: 'dashboard' }]);
  const [files, setFiles] = useState<File[]>([]);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const run = async () => {
      const refs: { path: string; sha256: string }[] = [];
      for (const [i, file] of files.entries()) {
        setBusy(`uploading ${file.name} (${i + 1}/${files.length})`);
        const res = await raw('/v1/blobs', {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream' },
          body: file,
        });
        const ref = (await res.json()) as { sha256: string };
        refs.push({ path: file.webkitRelativePath || file.name, sha256: ref.sha256 });
      }
      setBusy('publishing');
      const data = rows
        .filter((r) => r.key.trim() !== '')
        .map((r) => ({ key: r.key.trim(), value: r.value }));
      const out = await api<{ correlationId: string }>('/v1/events', {
        json: { type: type.trim(), data, files: refs },
      });
      navigate(`/traces/${encodeURIComponent(out.correlationId)}`);
    };
    run()
      .catch(setError)
      .finally(() => setBusy(null));
  };

  return (
    <>
      <h1>Publish an event</h1>
      <form onSubmit={submit} className="publish" aria-label="Publish an event">
        <label>
          Event type
          <input name="type" required value={type} onChange={(e) => setType(e.target.value)} />
        </label>
        <fieldset>
          <legend>Metadata</legend>
          {rows.map((row, i) => (
            <div key={i} className="kv-row">
              <label>
                Key {i + 1}
                <input
                  name={`key-${i}`}
                  value={row.key}
                  onChange={(e) =>
                    setRows(rows.map((r, j) => (j === i ? { ...r, key: e.target.value } : r)))
                  }
                />
              </label>
              <label>
                Value {i + 1}
                <input
                  name={`value-${i}`}
                  value={row.value}
                  onChange={(e) =>
                    setRows(rows.map((r, j) => (j === i ? { ...r, value: e.target.value } : r)))
                  }
                />
              </label>
              <button
                type="button"
                onClick={() => setRows(rows.filter((_, j) => j !== i))}
                aria-label={`Remove metadata row ${i + 1}`}
              >
                Remove
              </button>
            </div>
          ))}
          <button type="button" onClick={() => setRows([...rows, { key: '', value: '' }])}>
            Add metadata
          </button>
        </fieldset>
        <label>
          Files
          <input
            name="files"
            type="file"
            multiple
            onChange={(e) => setFiles([...(e.target.files ?? [])])}
          />
        </label>
        {files.length === 0 ? null : (
          <ul className="compact">
            {files.map((f) => (
              <li key={f.name}>
                {f.name} · {bytes(f.size)}
              </li>
            ))}
          </ul>
        )}
        <button type="submit" disabled={busy !== null}>
          Publish
        </button>
        {busy === null ? null : <p role="status">{busy}…</p>}
      </form>
      <ErrorBox error={error} />
    </>
  );
}
