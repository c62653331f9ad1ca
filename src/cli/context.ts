import { IonClient } from '../api/client.js';
import { ValidationError } from '../core/errors.js';

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
}

/** API URL precedence: `--api-url` > `ION_API_URL` > `http://127.0.0.1:$ION_PORT` (default port 7411). */
export function apiUrl(options: ApiOptions, env: NodeJS.ProcessEnv = process.env): string {
  if (options.apiUrl !== undefined) return options.apiUrl;
  if (env.ION_API_URL !== undefined && env.ION_API_URL !== '') return env.ION_API_URL;
  return `http://127.0.0.1:${env.ION_PORT ?? '7411'}`;
}

export function clientFor(options: ApiOptions): IonClient {
  return new IonClient(apiUrl(options), process.env.ION_TOKEN);
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
