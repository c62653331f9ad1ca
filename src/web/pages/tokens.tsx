import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { ActionButton, ErrorBox, Loading } from '../components/common.js';
import { api } from '../lib/api.js';
import { time } from '../lib/format.js';

/** API tokens (admin scope): list, create (the value is shown once), revoke. */

interface TokenView {
  id: string;
  name: string;
  scopes: string[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

const SCOPES = ['admin', 'publish', 'read'];

export function TokensPage() {
  const client = useQueryClient();
  const query = useQuery({
    queryKey: ['tokens'],
    queryFn: () => api<{ tokens: TokenView[] }>('/v1/tokens').then((r) => r.tokens),
  });
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['read']);
  const [created, setCreated] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const refresh = () => void client.invalidateQueries({ queryKey: ['tokens'] });
  const create = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    api<{ token: string }>('/v1/tokens', { json: { name, scopes } })
      .then((r) => {
        setCreated(r.token);
        setName('');
        refresh();
      })
      .catch(setError);
  };
  return (
    <>
      <h1>Tokens</h1>
      <ErrorBox error={query.error} />
      {query.data === undefined && query.error === null ? <Loading what="tokens" /> : null}
      {query.data === undefined ? null : (
        <table className="list">
          <caption>API tokens</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scopes</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Revoked</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {query.data.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.scopes.join(', ')}</td>
                <td>{time(t.createdAt)}</td>
                <td>{time(t.lastUsedAt)}</td>
                <td>{time(t.revokedAt)}</td>
                <td>
                  {t.revokedAt === null ? (
                    <ActionButton
                      label={`Revoke ${t.name}`}
                      action={() =>
                        api(`/v1/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' })
                      }
                      onDone={refresh}
                    />
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Create a token</h2>
      <form onSubmit={create} className="filters">
        <label>
          Name
          <input name="name" required value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s}>
              <input
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) =>
                  setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))
                }
              />
              {s}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={name === '' || scopes.length === 0}>
          Create token
        </button>
      </form>
      <ErrorBox error={error} />
      {created === null ? null : (
        <p role="status">
          New token (shown this once; copy it now): <code className="secret">{created}</code>
        </p>
      )}
    </>
  );
}
