/**
 * Runs s3rver in its own process for the bench (so the bench process's RSS is Ion's alone):
 * prints `{"endpoint": "http://127.0.0.1:<port>"}` on one line once listening, and stops
 * (removing its temp directory) on SIGTERM/SIGINT or when stdin closes.
 */
import { startS3rver } from '../test/support/emulators.js';

const s3 = await startS3rver();
process.stdout.write(`${JSON.stringify({ endpoint: s3.endpoint })}\n`);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  s3.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
