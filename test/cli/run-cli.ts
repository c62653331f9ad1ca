import { Writable } from 'node:stream';
import { runCli } from '../../src/cli/program.js';

/** What one `ion` command line did: its exit code and everything it wrote. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** No profile, no token, no CLI config file of the machine running the tests. */
export const BASE_ENV: NodeJS.ProcessEnv = {
  ION_TOKEN: '',
  ION_PROFILE: '',
  ION_CLI_CONFIG: '/nonexistent/ion.yaml',
};

function collector(): { stream: Writable & { isTTY?: boolean }; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

/**
 * Runs `ion ARGS` in this process, as the binary would against `apiUrl`, with its output
 * collected: the same commands, exit codes and text, without spawning a process per call.
 */
export async function ion(
  args: string[],
  options: { apiUrl?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  const stdout = collector();
  const stderr = collector();
  const env: NodeJS.ProcessEnv = { ...BASE_ENV, ...options.env };
  if (options.apiUrl !== undefined) env.ION_API_URL = options.apiUrl;
  const code = await runCli(args, { stdout: stdout.stream, stderr: stderr.stream, env });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
