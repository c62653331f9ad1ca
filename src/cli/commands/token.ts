import { Option, type Command } from 'commander';
import { createBackends } from '../../app/backends.js';
import { createLogger } from '../../app/logger.js';
import { SCOPES, TokenService, parseScopes, type TokenView } from '../../core/tokens.js';
import { UsageError, type ApiOptions, type CliContext } from '../context.js';
import { table } from '../render.js';
import { addRunOptions, loadRunConfig, type RunOptions } from '../run-ion.js';

/**
 * `ion token create|ls|revoke`. By default these commands open the configured document store
 * directly (same `--config`, `--data-dir` and `ION_*` environment as the server) instead of
 * calling the API: that is how an operator creates the first admin token of a server whose
 * auth is on, and it needs access to the store, which is the real trust boundary. With
 * `--remote` they call `POST/GET/DELETE /v1/tokens` instead, with the CLI's usual API settings
 * (`--api-url`, `--profile`, `--ca-file`, an admin `ION_TOKEN`); the output is the same.
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

/** What the commands do, on the store or through the API. */
interface TokenOps {
  create(input: { name: string; scopes: string[] }): Promise<{ token: string; record: TokenView }>;
  list(): Promise<TokenView[]>;
  revoke(id: string): Promise<TokenView>;
}

type TokenOptions = RunOptions & ApiOptions & { remote?: boolean };

/** Runs `fn` with the API (`--remote`) or the configured store; refuses flags of the other. */
async function withTokenOps<T>(
  ctx: CliContext,
  options: TokenOptions,
  fn: (ops: TokenOps) => Promise<T>,
): Promise<T> {
  const given = (flags: [string, unknown][]) =>
    flags.filter(([, v]) => v !== undefined).map(([flag]) => flag);
  if (options.remote === true) {
    const local = given([
      ['--data-dir', options.dataDir],
      ['--config', options.config],
    ]);
    if (local.length > 0)
      throw new UsageError(`${local.join(' and ')} open the store directly: not with --remote`);
    const client = ctx.clientFor(options);
    return fn({
      create: async (input) => {
        const { token, ...record } = await client.createToken(input);
        return { token, record };
      },
      list: () => client.listTokens(),
      revoke: (id) => client.revokeToken(id),
    });
  }
  const api = given([
    ['--api-url', options.apiUrl],
    ['--profile', options.profile],
    ['--ca-file', options.caFile],
  ]);
  if (api.length > 0) throw new UsageError(`${api.join(', ')} need --remote`);
  return withTokens(options, (tokens) =>
    fn({
      create: (input) => tokens.create(input),
      list: () => tokens.list(),
      revoke: (id) => tokens.revoke(id),
    }),
  );
}

/** `--remote` and the options every command that talks to a running Ion takes (main.ts). */
function addRemoteOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--remote',
        'call the API (POST/GET/DELETE /v1/tokens, with an admin token) instead of opening the store',
      ),
    )
    .addOption(
      new Option(
        '--api-url <url>',
        'with --remote: URL of a running Ion (env ION_API_URL; else the profile; default http://127.0.0.1:7411)',
      ),
    )
    .addOption(
      new Option(
        '--profile <name>',
        'with --remote: profile of the CLI config file to use (env ION_PROFILE)',
      ),
    )
    .addOption(
      new Option(
        '--ca-file <path>',
        'with --remote: PEM CA file to trust for an HTTPS API (env ION_CA_FILE; else the profile)',
      ),
    );
}

function scopesOption(value: string): string[] {
  try {
    return parseScopes(value);
  } catch (err) {
    throw new UsageError(`--scope: ${(err as Error).message}`);
  }
}

export function registerToken(program: Command, ctx: CliContext): void {
  const token = program
    .command('token')
    .description(
      "manage API tokens: on the configured store directly (run it where the server's config is), or through the API with --remote",
    );
  addRemoteOptions(
    addRunOptions(
      token
        .command('create')
        .description('create a token and print its value: it is shown this once only')
        .requiredOption('--name <name>', 'what the token is for (shown by `ion token ls`)')
        .requiredOption('--scope <scopes>', `comma-separated scopes: ${SCOPES.join(', ')}`)
        .option('--json', 'print JSON'),
      false,
    ),
  ).action(async (options: TokenOptions & { name: string; scope: string; json?: boolean }) => {
    const scopes = scopesOption(options.scope);
    const { token: value, record } = await withTokenOps(ctx, options, (ops) =>
      ops.create({ name: options.name, scopes }),
    );
    if (options.json === true) return ctx.printJson({ token: value, ...record });
    ctx.print(`created token ${record.id} (${record.name}; scopes ${record.scopes.join(', ')})`);
    ctx.print(value);
    ctx.print('store it now: Ion keeps only its hash and cannot show it again.');
  });
  addRemoteOptions(
    addRunOptions(
      token
        .command('ls')
        .description('list tokens (never their values)')
        .option('--json', 'print JSON'),
      false,
    ),
  ).action(async (options: TokenOptions & { json?: boolean }) => {
    const tokens = await withTokenOps(ctx, options, (ops) => ops.list());
    if (options.json === true) return ctx.printJson({ tokens });
    ctx.print(
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
  addRemoteOptions(
    addRunOptions(
      token
        .command('revoke <id>')
        .description('revoke a token: requests carrying it are refused from now on')
        .option('--json', 'print JSON'),
      false,
    ),
  ).action(async (id: string, options: TokenOptions & { json?: boolean }) => {
    const record = await withTokenOps(ctx, options, (ops) => ops.revoke(id));
    if (options.json === true) return ctx.printJson(record);
    ctx.print(`revoked ${record.id} (${record.name}) at ${record.revokedAt}`);
  });
}
