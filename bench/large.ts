/**
 * `BENCH_SUITE=large npm run bench`: one large blob streamed through each blob adapter:
 * `blobs.put(generator)` then `blobs.get` streamed back and hashed, at two sizes (256 MiB
 * and BENCH_LARGE_MIB), with this process's RSS sampled every 50 ms. See docs/benchmarks.md
 * ("Large files").
 *
 * Environment:
 *   BENCH_LARGE_MIB       the large size, MiB (default 1024); the small run is 256 MiB
 *   BENCH_LARGE_ADAPTERS  comma list, default fs,s3,azure
 *
 * s3rver runs in a child process (bench/s3rver-child.ts) and Azurite is one already, so the
 * RSS reported is the bench process (Ion's adapter, the SDK, the generator and the hash)
 * alone; each emulator's own peak RSS is read from /proc and reported beside it.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Readable } from 'node:stream';
import type { BlobStore } from '../src/blob/blob-store.js';
import { AzureBlobStore } from '../src/blob/azure/azure-blob-store.js';
import { FsBlobStore } from '../src/blob/fs/fs-blob-store.js';
import { S3BlobStore } from '../src/blob/s3/s3-blob-store.js';
import { S3RVER_CREDENTIALS, startAzurite, startS3rverChild } from './emulators.js';
import { childPids, f, intEnv, loadAverage, MIB, peakRssOf, RssSampler, table } from './util.js';

const LARGE_MIB = intEnv('BENCH_LARGE_MIB', 1024);
const SMALL_MIB = 256;
const CHUNK = MIB;

// A full GC between runs, so each window starts from the same live heap.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** `mib` MiB of pseudo-random bytes, a fresh 1 MiB buffer per chunk (nothing is reused). */
async function* generated(mib: number): AsyncGenerator<Buffer> {
  const base = randomBytes(CHUNK);
  for (let i = 0; i < mib; i++) {
    const chunk = Buffer.allocUnsafe(CHUNK);
    base.copy(chunk);
    chunk.writeUInt32BE(i, 0);
    yield chunk;
    // Let timers (the RSS sampler) run between chunks even when everything is synchronous.
    if (i % 16 === 15) await new Promise((r) => setImmediate(r));
  }
}

/**
 * Time spent in the object-storage adapters' private `promote` (the server-side copy from the
 * temp key to the content key, after the upload), wrapped from outside; src/ is untouched.
 */
let promoteMs = 0;
for (const proto of [S3BlobStore.prototype, AzureBlobStore.prototype]) {
  const target = proto as unknown as { promote: (...args: unknown[]) => Promise<void> };
  const original = target.promote;
  target.promote = async function timedPromote(this: unknown, ...args: unknown[]) {
    const t = performance.now();
    try {
      return await original.apply(this, args);
    } finally {
      promoteMs += performance.now() - t;
    }
  };
}

interface Adapter {
  id: string;
  label: string;
  open(): Promise<{ blobs: BlobStore; emulatorPids: () => number[]; stop(): Promise<void> }>;
}

const ADAPTERS: Adapter[] = [
  {
    id: 'fs',
    label: 'fs (reference)',
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'ion-bench-large-fs-'));
      const blobs = new FsBlobStore({ dir });
      return {
        blobs,
        emulatorPids: () => [],
        stop: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    id: 's3',
    label: 'S3 (s3rver, child process)',
    async open() {
      const s3 = await startS3rverChild();
      const blobs = new S3BlobStore({
        bucket: `ion-bench-${randomBytes(6).toString('hex')}`,
        endpoint: s3.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: S3RVER_CREDENTIALS,
        checksums: 'when_required',
      });
      return { blobs, emulatorPids: () => [s3.pid], stop: () => s3.stop() };
    },
  },
  {
    id: 'azure',
    label: 'Azure (Azurite, child process)',
    async open() {
      const before = new Set(childPids());
      const azure = await startAzurite();
      const pids = childPids().filter((p) => !before.has(p));
      const blobs = new AzureBlobStore({
        connectionString: azure.connectionString,
        container: `ion-bench-${randomBytes(6).toString('hex')}`,
      });
      return { blobs, emulatorPids: () => pids, stop: () => azure.stop() };
    },
  },
];

interface Row {
  adapter: Adapter;
  mib: number;
  putMBs: number;
  /** Seconds of the put spent copying the temp object to its final key. */
  copySeconds: number;
  getMBs: number;
  rssStartMb: number;
  putPeakMb: number;
  getPeakMb: number;
  emulatorPeakMb: number;
}

async function hashStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

async function runAdapter(adapter: Adapter, sizes: number[], rss: RssSampler): Promise<Row[]> {
  const opened = await adapter.open();
  const rows: Row[] = [];
  try {
    await opened.blobs.start();
    // Warm-up: a small put/get, so SDK loading and first connections are not in the windows.
    const warm = await opened.blobs.put(generated(1));
    await hashStream(await opened.blobs.get(warm.sha256));
    for (const mib of sizes) {
      gc();
      await new Promise((r) => setTimeout(r, 200));
      gc();
      const rssStart = rss.reset();
      promoteMs = 0;
      let t = performance.now();
      const ref = await opened.blobs.put(generated(mib));
      const putSeconds = (performance.now() - t) / 1000;
      const putPeak = rss.peak();
      if (ref.size !== mib * MIB) throw new Error(`${adapter.id}: put stored ${ref.size} bytes`);
      gc();
      rss.reset();
      t = performance.now();
      const back = await hashStream(await opened.blobs.get(ref.sha256));
      const getSeconds = (performance.now() - t) / 1000;
      const getPeak = rss.peak();
      if (back.sha256 !== ref.sha256 || back.size !== ref.size)
        throw new Error(
          `${adapter.id}: read back ${back.size} bytes hashing ${back.sha256}, stored ${ref.size} / ${ref.sha256}`,
        );
      rows.push({
        adapter,
        mib,
        putMBs: (mib * MIB) / 1e6 / putSeconds,
        copySeconds: promoteMs / 1000,
        getMBs: (mib * MIB) / 1e6 / getSeconds,
        rssStartMb: rssStart / MIB,
        putPeakMb: putPeak / MIB,
        getPeakMb: getPeak / MIB,
        emulatorPeakMb: NaN,
      });
      console.log(
        `  ${adapter.id} ${mib} MiB: put ${f(putSeconds, 1)} s (copy to final key ${f(promoteMs / 1000, 1)} s), get ${f(getSeconds, 1)} s, peak RSS ${f(putPeak / MIB)} / ${f(getPeak / MIB)} MiB`,
      );
    }
    const emu = opened.emulatorPids().map(peakRssOf);
    for (const row of rows)
      row.emulatorPeakMb = emu.length === 0 ? NaN : emu.reduce((a, b) => a + b, 0) / MIB;
  } finally {
    await opened.blobs.close();
    await opened.stop();
  }
  return rows;
}

export async function runLargeSuite(): Promise<void> {
  const started = performance.now();
  const sizes = LARGE_MIB > SMALL_MIB ? [SMALL_MIB, LARGE_MIB] : [LARGE_MIB];
  const wanted = (process.env.BENCH_LARGE_ADAPTERS ?? 'fs,s3,azure')
    .split(',')
    .map((s) => s.trim());
  const adapters = ADAPTERS.filter((a) => wanted.includes(a.id));
  // Each emulator keeps the temp object and the final one for a moment, plus the small run.
  const needBytes = (2 * LARGE_MIB + SMALL_MIB) * MIB * 1.2;
  const fsStat = statfsSync(tmpdir());
  const freeBytes = fsStat.bavail * fsStat.bsize;
  console.log(execFileSync('df', ['-h', tmpdir()], { encoding: 'utf8' }).trim());
  if (freeBytes < needBytes)
    throw new Error(
      `not enough free space in ${tmpdir()}: ${f(freeBytes / MIB / 1024)} GiB free, need ~${f(needBytes / MIB / 1024)} GiB`,
    );
  console.log(
    `Ion bench, large files: ${sizes.join(' and ')} MiB through ${adapters.map((a) => a.id).join(', ')}; ` +
      `Node ${process.version}, load average ${loadAverage()}`,
  );
  const rss = new RssSampler(50);
  const rows: Row[] = [];
  try {
    for (const adapter of adapters) rows.push(...(await runAdapter(adapter, sizes, rss)));
  } finally {
    rss.stop();
  }
  console.log('\n## Large files (MB/s = 10^6 bytes per second; RSS in MiB)\n');
  const out = [
    [
      'adapter',
      'size',
      'put MB/s',
      '… of which copy to final key',
      'get MB/s',
      'RSS at start',
      'peak RSS put',
      'peak RSS get',
      'emulator peak RSS',
    ],
  ];
  for (const r of rows)
    out.push([
      r.adapter.label,
      `${r.mib} MiB`,
      f(r.putMBs),
      r.adapter.id === 'fs' ? '- (rename)' : `${f(r.copySeconds, 1)} s`,
      f(r.getMBs),
      f(r.rssStartMb),
      f(r.putPeakMb),
      f(r.getPeakMb),
      Number.isFinite(r.emulatorPeakMb) ? f(r.emulatorPeakMb) : '-',
    ]);
  console.log(table(out));
  console.log(
    `\nprocess.resourceUsage().maxRSS (whole bench process): ${f(process.resourceUsage().maxRSS / 1024)} MiB`,
  );
  console.log(
    `bench finished in ${f((performance.now() - started) / 1000)} s, load average ${loadAverage()}`,
  );
}
