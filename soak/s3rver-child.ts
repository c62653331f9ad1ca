// s3rver in a child process of the soak: an emulator crash (s3rver has races between a put
// and a delete in one prefix) must not take the soak down with it. Prints the endpoint.
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
}) => S3rverInstance;

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
const directory = process.argv[2] ?? '.';
process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
  console.error(`s3rver: uncaught ${err.code ?? ''} ${err.message}`);
});
const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
const address = await server.run();
console.log(`s3rver listening on http://127.0.0.1:${address.port}`);
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
