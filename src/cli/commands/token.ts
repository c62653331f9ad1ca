import type { Command } from 'commander';
import { createBackends } from '../../app/backends.js';
import { createLogger } from '../../app/logger.js';
import { SCOPES, TokenService, parseScopes } from '../../core/tokens.js';
import { UsageError, print, printJson } from '../context.js';
import { table } from '../render.js';
import { addRunOptions, loadRunConfig, type RunOptions } from '../run-ion.js';

/**
 * `ion token create|ls|revoke`. These commands open the configured document store directly
 * (same `--config`, `--data-dir` and `ION_*` environment as the server) instead of calling the
 * API: that is how an operator creates the first admin token of a server whose auth is on,
 * and it needs access to the store, which is the real trust boundary. Programs holding an
 * admin token use `POST/GET/DELETE /v1/tokens` instead.
 */
async function withTokens<T>(
  options: RunOptions,
  fn: (tokens: TokenService) => Promise<T>,
): Promise<T> {
  const config = loadRunConfig(options);
  const { store } = await createBackends(config, createLogger('warn'));
  await store.start();
  try {
    return await fn(new TokenService(store));
  } finally {
    await store.close();
  }
}

function scopesOption(value: string): string[] {
  try {
    return parseScopes(value);
  } catch (err) {
    throw new UsageError(`--scope: ${(err as Error).message}`);
  }
}

export function registerToken(program: Command): void {
  const token = program
    .command('token')
    .description(
      "manage API tokens (on the configured store directly; run it where the server's config is)",
    );
  addRunOptions(
    token
      .command('create')
      .description('create a token and print its value: it is shown this once only')
      .requiredOption('--name <name>', 'what the token is for (shown by `ion token ls`)')
      .requiredOption('--scope <scopes>', `comma-separated scopes: ${SCOPES.join(', ')}`)
      .option('--json', 'print JSON'),
    false,
  ).action(async (options: RunOptions & { name: string; scope: string; json?: boolean }) => {
    const scopes = scopesOption(options.scope);
    const { token: value, record } = await withTokens(options, (tokens) =>
      tokens.create({ name: options.name, scopes }),
    );
    if (options.json === true) return printJson({ token: value, ...record });
    print(`created token ${record.id} (${record.name}; scopes ${record.scopes.join(', ')})`);
    print(value);
    print('store it now: Ion keeps only its hash and cannot show it again.');
  });
  addRunOptions(
    token
      .command('ls')
      .description('list tokens (never their values)')
      .option('--json', 'print JSON'),
    false,
  ).action(async (options: RunOptions & { json?: boolean }) => {
    const tokens = await withTokens(options, (t) => t.list());
    if (options.json === true) return printJson({ tokens });
    print(
      table(
        ['ID', 'NAME', 'SCOPES', 'CREATED', 'LAST USED', 'REVOKED'],
        tokens.map((t) => [
          t.id,
          t.name,
          t.scopes.join(','),
          t.createdAt,
          t.lastUsedAt ?? '-',
          t.revokedAt ?? '-',
        ]),
      ),
    );
  });
  addRunOptions(
    token
      .command('revoke <id>')
      .description('revoke a token: requests carrying it are refused from now on')
      .option('--json', 'print JSON'),
    false,
  ).action(async (id: string, options: RunOptions & { json?: boolean }) => {
    const record = await withTokens(options, (t) => t.revoke(id));
    if (options.json === true) return printJson(record);
    print(`revoked ${record.id} (${record.name}) at ${record.revokedAt}`);
  });
}
