import { useState, type FormEvent } from 'react';
import { ApiError } from '../lib/api.js';

/**
 * Asks for an API token when auth is on. The token is checked against the API, then kept in
 * this tab's session storage only: never in a URL, a cookie or a log.
 */
export function LoginPage(props: { onToken(token: string): void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    fetch('/v1/modules', { headers: { authorization: `Bearer ${value.trim()}` } })
      .then(async (res) => {
        if (res.ok) return props.onToken(value.trim());
        const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
        throw new ApiError(res.status, 'login', body.error?.message ?? `${res.status}`);
      })
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };

  return (
    <main id="main" className="login">
      <h1>Sign in to Ion</h1>
      <p>
        This Ion needs an API token. Create one with{' '}
        <code>ion token create --name me --scope admin</code>.
      </p>
      <form onSubmit={submit}>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          required
          value={value}
          onChange={(e) => setValue(e.target.value)}
        />
        <button type="submit" disabled={busy || value.trim() === ''}>
          Sign in
        </button>
      </form>
      {error === null ? null : (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}
