import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { readYamlFile } from '../core/pipeline-file.js';
import { parseOrThrow } from '../core/validation.js';

/**
 * The CLI's own settings file: named profiles holding an API URL and a token, for example
 *
 * ```yaml
 * current: prod
 * profiles:
 *   local: { apiUrl: http://127.0.0.1:7411 }
 *   prod: { apiUrl: https://ion.example.com, token: ion_... }
 *   staging: { apiUrl: https://ion.staging.internal, caFile: ca.pem }
 * ```
 *
 * `caFile` is a PEM file of certificate authorities to trust for an HTTPS API with a private
 * CA or a self-signed certificate; a relative path is relative to this file.
 *
 * Found at `$ION_CLI_CONFIG`, else `$XDG_CONFIG_HOME/ion/config.yaml`, else
 * `~/.config/ion/config.yaml`. A missing file is no error; an invalid one is.
 */
const profileSchema = z
  .object({
    apiUrl: z.string().url().optional(),
    token: z.string().min(1).optional(),
    caFile: z.string().min(1).optional(),
  })
  .strict();
const fileSchema = z
  .object({
    current: z.string().optional(),
    profiles: z.record(z.string(), profileSchema).default({}),
  })
  .strict();

export type CliFile = z.output<typeof fileSchema>;

export function cliConfigPath(env: NodeJS.ProcessEnv): string {
  if (env.ION_CLI_CONFIG !== undefined && env.ION_CLI_CONFIG !== '') return env.ION_CLI_CONFIG;
  const base =
    env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== ''
      ? env.XDG_CONFIG_HOME
      : join(homedir(), '.config');
  return join(base, 'ion', 'config.yaml');
}

export function readCliFile(path: string): CliFile | null {
  if (!existsSync(path)) return null;
  return parseOrThrow(
    fileSchema,
    readYamlFile(path, 'CLI config file') ?? {},
    `CLI config file ${path}`,
  );
}

/** Where each resolved setting came from, so `ion config show` can say it. */
export type Source = 'flag' | 'env' | 'file' | 'default';

export interface CliSettings {
  apiUrl: string;
  apiUrlFrom: Source;
  token: string | undefined;
  tokenFrom: Source;
  /** PEM file of CAs to trust besides the system ones (a private CA, a self-signed cert). */
  caFile: string | undefined;
  caFileFrom: Source;
  profile: string | undefined;
  file: string;
}

/**
 * Resolves the API URL, token, CA file and profile with the precedence flags > environment >
 * file > default. The profile is chosen by `--profile`, else `ION_PROFILE`, else the file's
 * `current`; naming a profile the file does not have is an error.
 */
export function resolveCliSettings(
  flags: { apiUrl?: string; profile?: string; caFile?: string },
  env: NodeJS.ProcessEnv,
): CliSettings {
  const file = cliConfigPath(env);
  const doc = readCliFile(file);
  const profileName =
    flags.profile ??
    (env.ION_PROFILE !== undefined && env.ION_PROFILE !== '' ? env.ION_PROFILE : undefined) ??
    doc?.current;
  let profile: z.output<typeof profileSchema> | undefined;
  if (profileName !== undefined) {
    profile = doc?.profiles[profileName];
    if (profile === undefined) {
      throw new ProfileError(
        `profile "${profileName}" is not in ${file}${doc === null ? ' (no such file)' : ''}`,
      );
    }
  }
  const envUrl =
    env.ION_API_URL !== undefined && env.ION_API_URL !== '' ? env.ION_API_URL : undefined;
  const envToken = env.ION_TOKEN !== undefined && env.ION_TOKEN !== '' ? env.ION_TOKEN : undefined;
  const [apiUrl, apiUrlFrom]: [string, Source] =
    flags.apiUrl !== undefined
      ? [flags.apiUrl, 'flag']
      : envUrl !== undefined
        ? [envUrl, 'env']
        : profile?.apiUrl !== undefined
          ? [profile.apiUrl, 'file']
          : [`http://127.0.0.1:${env.ION_PORT ?? '7411'}`, 'default'];
  const [token, tokenFrom]: [string | undefined, Source] =
    envToken !== undefined
      ? [envToken, 'env']
      : profile?.token !== undefined
        ? [profile.token, 'file']
        : [undefined, 'default'];
  const envCa =
    env.ION_CA_FILE !== undefined && env.ION_CA_FILE !== '' ? env.ION_CA_FILE : undefined;
  const [caFile, caFileFrom]: [string | undefined, Source] =
    flags.caFile !== undefined
      ? [flags.caFile, 'flag']
      : envCa !== undefined
        ? [envCa, 'env']
        : profile?.caFile !== undefined
          ? [resolve(dirname(file), profile.caFile), 'file']
          : [undefined, 'default'];
  return {
    apiUrl,
    apiUrlFrom,
    token,
    tokenFrom,
    caFile,
    caFileFrom,
    profile: profileName,
    file,
  };
}

export class ProfileError extends Error {}
