// Ion warm module helper for Node.js: plain ESM, no dependencies.
//
//   import { serve } from './ion-warm.mjs';
//   function main(jobDir) {        // may be async
//     ...                          // read in/, write out/ exactly as a cold module does
//     return 0;                    // exit code; process.exit(n) and process.exitCode work too
//   }
//   serve(main);
//
// Started by Ion as a warm module (ION_CONTROL_FD set, or ION_CONTROL_SOCKET in a warm
// container: the unix socket it connects to), serve() loads once and calls main
// once per job: the working directory is the job directory and process.env holds that
// job's contract variables (HANDLER_BASE_DIR, ION_EVENT_ID, ...). Started any other way (a
// cold module, or by hand in a prepared directory), it calls main once and the process
// exits with its code, so one file runs cold and warm. Protocol: docs/modules.md, "Warm
// modules".

import { Socket, connect } from 'node:net';
import { createInterface } from 'node:readline';

const PROTOCOL = 1;

/** process.exit() called by the author's function during a warm job. */
class ExitRequest extends Error {
  constructor(code) {
    super(`process.exit(${code})`);
    this.code = code;
  }
}

/**
 * Runs `fn(jobDir)` once per job (warm) or once (cold). Returns when the process should
 * end; in cold mode the exit code is left in process.exitCode.
 */
export async function serve(fn) {
  const control = process.env.ION_CONTROL_FD;
  const path = process.env.ION_CONTROL_SOCKET;
  if (!control && !path) {
    const dir = process.env.HANDLER_BASE_DIR || process.env.ION_BASE_DIR || process.cwd();
    const code = await fn(dir);
    if (typeof code === 'number') process.exitCode = code;
    return;
  }
  const socket = path
    ? await connectTo(path) // a warm container: Ion listens on a socket mounted into it
    : new Socket({ fd: Number(control), readable: true, writable: true });
  await warmLoop(fn, socket);
}

function connectTo(path) {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

async function warmLoop(fn, socket) {
  const baseEnv = { ...process.env };
  const home = process.cwd();
  let busy = false;
  socket.on('error', () => undefined);
  socket.on('end', () => {
    // Ion is gone in the middle of a job: take the whole process group down now.
    if (busy) process.kill(0, 'SIGKILL');
  });
  const send = (message) => socket.write(`${JSON.stringify(message)}\n`);
  send({ type: 'ready', protocol: PROTOCOL });
  for await (const line of createInterface({ input: socket, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    const job = JSON.parse(line);
    if (job.type !== 'job') continue;
    for (const key of Object.keys(process.env)) if (!(key in baseEnv)) delete process.env[key];
    Object.assign(process.env, baseEnv, job.env ?? {});
    busy = true;
    const { code, error } = await runOnce(fn, job.dir);
    await mark(job.mark);
    process.chdir(home);
    busy = false;
    send({ type: 'done', id: job.id, ok: code === 0, exitCode: code, ...(error ? { error } : {}) });
  }
  process.exit(0); // end of file: Ion asks this process to exit
}

async function runOnce(fn, dir) {
  const realExit = process.exit;
  process.exitCode = undefined;
  process.exit = (code) => {
    throw new ExitRequest(code ?? process.exitCode ?? 0);
  };
  try {
    process.chdir(dir);
    const result = await fn(dir);
    return { code: typeof result === 'number' ? result : Number(process.exitCode ?? 0) };
  } catch (err) {
    if (err instanceof ExitRequest) return { code: Number(err.code) || 0 };
    console.error(err);
    return { code: 1, error: String(err?.message ?? err).slice(0, 2000) };
  } finally {
    process.exit = realExit;
    process.exitCode = undefined;
  }
}

/** Everything written so far is this job's log: write the job's end mark after it. */
async function mark(id) {
  const bytes = `\u001eion-end:${id}\u001e`;
  await new Promise((resolve) => process.stdout.write(bytes, resolve));
  await new Promise((resolve) => process.stderr.write(bytes, resolve));
}
