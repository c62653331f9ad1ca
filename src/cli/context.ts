import { readFileSync } from 'node:fs';
import { IonClient } from '../api/client.js';
import { ValidationError } from '../core/errors.js';
import { ProfileError, resolveCliSettings, type CliSettings } from './profiles.js';

/** A mistake in the command line itself: the CLI exits with code 2. */
export class UsageError extends ValidationError {}

/** Parses a positive whole-number option or throws a UsageError naming it. */
export function positiveInt(flag: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new UsageError(`${flag} must be a positive whole number, got "${value}"`);
  return Number(value);
}

/** Options every command that talks to a running Ion accepts. */
export interface ApiOptions {
  apiUrl?: string;
  profile?: string;
  /** PEM CA file to trust for an HTTPS API (`--ca-file`, else `ION_CA_FILE`, else the profile). */
  caFile?: string;
}

/**
 * The API URL and token for a command: flags > `ION_API_URL`/`ION_TOKEN`/`ION_PROFILE` >
 * the CLI config file's profile > `http://127.0.0.1:$ION_PORT` (see profiles.ts).
 */
export function settingsFor(
  options: ApiOptions,
  env: NodeJS.ProcessEnv = process.env,
): CliSettings {
  try {
    return resolveCliSettings(options, env);
  } catch (err) {
    if (err instanceof ProfileError) throw new UsageError(err.message);
    throw err;
  }
}

/** Reads a CA file the CLI was told to trust, or says which one it cannot read and why. */
export function readCaFile(path: string, from: CliSettings['caFileFrom'] = 'flag'): string {
  const origin =
    from === 'flag' ? '--ca-file' : from === 'env' ? 'ION_CA_FILE' : "the profile's caFile";
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `cannot read the CA file ${path} (from ${origin}): ${code === 'ENOENT' ? 'no such file' : (code ?? 'unreadable')}`,
    );
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    throw new UsageError(`the CA file ${path} (from ${origin}) holds no PEM certificate`);
  return text;
}

/** Collects repeatable options (`--data a=1 --data b=2`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Where a command writes and what environment it reads: the process's, or a test's. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/**
 * What a command depends on, injected: its output streams, its environment, and how it gets
 * an API client. The binary passes the process's; a test passes its own streams and a client
 * of the server it started, and calls the commands in process. A command reports failure by
 * setting `exitCode` (never `process.exitCode`), so one process can run many.
 */
export class CliContext {
  exitCode = 0;
  readonly stdout: CliIo['stdout'];
  readonly stderr: CliIo['stderr'];
  readonly env: NodeJS.ProcessEnv;

  constructor(
    io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
    private readonly makeClient?: (options: ApiOptions) => IonClient,
  ) {
    this.stdout = io.stdout;
    this.stderr = io.stderr;
    this.env = io.env;
  }

  /** The API client for a command's options: flags > environment > profile (see settingsFor). */
  clientFor(options: ApiOptions): IonClient {
    if (this.makeClient !== undefined) return this.makeClient(options);
    const settings = settingsFor(options, this.env);
    return new IonClient(
      settings.apiUrl,
      settings.token,
      settings.caFile === undefined ? {} : { ca: readCaFile(settings.caFile, settings.caFileFrom) },
    );
  }

  print(text: string): void {
    this.stdout.write(`${text}\n`);
  }

  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }
}
