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

export function clientFor(options: ApiOptions): IonClient {
  const settings = settingsFor(options);
  return new IonClient(settings.apiUrl, settings.token);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Collects repeatable options (`--data a=1 --data b=2`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
