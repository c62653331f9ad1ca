import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createJobHosts } from '../../src/app/backends.js';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { loadConfig } from '../../src/config/config.js';
import { ClientCluster } from '../../src/executors/kubernetes/client-cluster.js';
import type { DocumentStore } from '../../src/store/document-store.js';
import { waitFor } from '../support/wait.js';

/**
 * ClientCluster's API calls against a SCRIPTED exchange, not a cluster: no Kubernetes API
 * server can run on these machines. The server below answers each call the way the
 * Kubernetes API documents it (paths, verbs, status codes, List/Watch/Status bodies), and
 * the tests check what the client sends and how it reads the answers. A real API server may
 * differ in ways this cannot show (see docs/executors.md#the-kubernetes-executor).
 */

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  body: string;
}

interface Script {
  seen: Seen[];
  url: string;
  /** Sends one watch event to the open pod watch. */
  push(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: V1Pod): void;
  close(): Promise<void>;
}

const NS = 'pipelines';
const JOB = 'ion-job1-a1';

function pod(phase: string, moduleState: object): V1Pod {
  return {
    metadata: {
      name: `${JOB}-x7k2p`,
      namespace: NS,
      labels: { 'app.kubernetes.io/managed-by': 'ion', 'ion.io/job': JOB, 'job-name': JOB },
      resourceVersion: String(Math.floor(Math.random() * 1e6)),
    },
    status: {
      phase,
      initContainerStatuses: [
        {
          name: 'module',
          image: 'm:1',
          imageID: '',
          ready: false,
          restartCount: 0,
          state: moduleState,
        },
      ],
    },
  };
}

async function scripted(): Promise<Script> {
  const seen: Seen[] = [];
  const watches: ServerResponse[] = [];
  const jobs = new Set<string>();
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const status = (res: ServerResponse, code: number, reason: string, message: string): void =>
    json(res, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code });
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, body });
      const jobsPath = `/apis/batch/v1/namespaces/${NS}/jobs`;
      if (req.method === 'POST' && url.pathname === jobsPath) {
        const job = JSON.parse(body) as { metadata: { name: string } };
        if (jobs.has(job.metadata.name))
          return status(
            res,
            409,
            'AlreadyExists',
            `jobs.batch "${job.metadata.name}" already exists`,
          );
        jobs.add(job.metadata.name);
        return json(res, 201, job);
      }
      if (req.method === 'DELETE' && url.pathname.startsWith(`${jobsPath}/`)) {
        const name = url.pathname.slice(jobsPath.length + 1);
        if (!jobs.delete(name))
          return status(res, 404, 'NotFound', `jobs.batch "${name}" not found`);
        return json(res, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
      }
      if (req.method === 'GET' && url.pathname === `/api/v1/namespaces/${NS}/pods`) {
        if (url.searchParams.get('watch') === 'true') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.flushHeaders();
          watches.push(res);
          return;
        }
        return json(res, 200, {
          kind: 'PodList',
          apiVersion: 'v1',
          metadata: { resourceVersion: '100' },
          items: [],
        });
      }
      if (
        req.method === 'GET' &&
        url.pathname === `/api/v1/namespaces/${NS}/pods/${JOB}-x7k2p/log`
      ) {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('line one\n');
        res.end('line two\n');
        return;
      }
      if (req.method === 'GET' && url.pathname === `/api/v1/namespaces/${NS}/events`) {
        return json(res, 200, {
          kind: 'EventList',
          apiVersion: 'v1',
          metadata: {},
          items: [
            {
              metadata: { name: 'e2' },
              involvedObject: {},
              type: 'Warning',
              reason: 'FailedScheduling',
              message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.',
              lastTimestamp: '2026-12-04T10:00:05Z',
            },
            {
              metadata: { name: 'e1' },
              involvedObject: {},
              type: 'Normal',
              reason: 'Scheduled',
              message: 'earlier',
              lastTimestamp: '2026-12-04T10:00:01Z',
            },
          ],
        });
      }
      status(res, 404, 'NotFound', `no route ${req.method} ${url.pathname}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    seen,
    url: `http://127.0.0.1:${port}`,
    push(type, object) {
      for (const w of watches) w.write(`${JSON.stringify({ type, object })}\n`);
    },
    async close() {
      for (const w of watches) w.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function kubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'test-token' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u', namespace: NS }],
    currentContext: 'ctx',
  });
  return kc;
}

let script: Script | undefined;
let cluster: ClientCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  await script?.close();
  cluster = undefined;
  script = undefined;
});

async function started(): Promise<{ script: Script; cluster: ClientCluster }> {
  script = await scripted();
  cluster = new ClientCluster({
    namespace: NS,
    kubeConfig: kubeConfig(script.url),
    logger: pino({ level: 'silent' }),
  });
  await cluster.start();
  return { script, cluster };
}

describe('ClientCluster against a scripted API exchange (no cluster)', () => {
  it('lists then watches only the pods Ion created, and hands each state to the watcher of its Job', async () => {
    const { script, cluster } = await started();
    const list = script.seen.find(
      (s) => s.path.endsWith('/pods') && s.query.get('watch') !== 'true',
    );
    expect(list?.query.get('labelSelector')).toBe('app.kubernetes.io/managed-by=ion');
    await waitFor('the watch to open', () =>
      script.seen.find((s) => s.query.get('watch') === 'true'),
    );
    const watch = script.seen.find((s) => s.query.get('watch') === 'true')!;
    expect(watch.query.get('labelSelector')).toBe('app.kubernetes.io/managed-by=ion');
    const states: (string | null)[] = [];
    const stop = cluster.watchPod(JOB, (p) => states.push(p === null ? null : p.status!.phase!));
    script.push('ADDED', pod('Pending', { waiting: { reason: 'PodInitializing' } }));
    script.push('MODIFIED', pod('Failed', { terminated: { exitCode: 3, reason: 'Error' } }));
    script.push('DELETED', pod('Failed', { terminated: { exitCode: 3, reason: 'Error' } }));
    await waitFor('three pod states', () => (states.length >= 3 ? states : undefined));
    expect(states).toEqual(['Pending', 'Failed', null]);
    stop();
  });

  it('creates the Job through the batch API and reports an existing one (409) as adoptable', async () => {
    const { script, cluster } = await started();
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: JOB },
      spec: { template: { spec: { containers: [] } } },
    };
    expect(await cluster.createJob(job)).toBe('created');
    expect(await cluster.createJob(job)).toBe('exists');
    const post = script.seen.find((s) => s.method === 'POST')!;
    expect(post.path).toBe(`/apis/batch/v1/namespaces/${NS}/jobs`);
    expect(JSON.parse(post.body)).toMatchObject({ metadata: { name: JOB } });
  });

  it('reads a container log through the log API without ending the sink it copies into', async () => {
    const { script, cluster } = await started();
    const sink = new PassThrough();
    const all = text(sink);
    await cluster.readLog(`${JOB}-x7k2p`, 'module', sink, { follow: true });
    sink.write('after\n');
    sink.end();
    expect(await all).toBe('line one\nline two\nafter\n');
    const get = script.seen.find((s) => s.path.endsWith('/log'))!;
    expect(get.query.get('container')).toBe('module');
    expect(get.query.get('follow')).toBe('true');
  });

  it("lists the pod's events oldest first, selected by the pod's name", async () => {
    const { script, cluster } = await started();
    const events = await cluster.podEvents(`${JOB}-x7k2p`);
    expect(events.map((e) => e.reason)).toEqual(['Scheduled', 'FailedScheduling']);
    const get = script.seen.find((s) => s.path.endsWith('/events'))!;
    expect(get.query.get('fieldSelector')).toBe(
      `involvedObject.kind=Pod,involvedObject.name=${JOB}-x7k2p`,
    );
  });

  it('deletes the Job with its pod (background propagation), a Job already gone being fine', async () => {
    const { script, cluster } = await started();
    await cluster.createJob({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: JOB } });
    await cluster.deleteJob(JOB);
    await cluster.deleteJob(JOB); // 404: already gone
    const deletes = script.seen.filter((s) => s.method === 'DELETE');
    expect(deletes).toHaveLength(2);
    expect(deletes[0]!.path).toBe(`/apis/batch/v1/namespaces/${NS}/jobs/${JOB}`);
    expect(
      deletes[0]!.query.get('propagationPolicy') ??
        (JSON.parse(deletes[0]!.body || '{}') as { propagationPolicy?: string }).propagationPolicy,
    ).toBe('Background');
  });

  it('fails to start with the reason when the API server cannot be reached', async () => {
    cluster = new ClientCluster({
      namespace: NS,
      kubeConfig: kubeConfig('http://127.0.0.1:1'),
      logger: pino({ level: 'silent' }),
    });
    await expect(cluster.start()).rejects.toThrow(/cannot watch pods in namespace pipelines/);
  });
});

describe('the kubernetes executor at start-up', () => {
  it('is refused with a clear error when the blob store is the filesystem', async () => {
    const config = loadConfig({
      env: {},
      flags: { executor: { kind: 'kubernetes' }, logLevel: 'silent' },
    });
    const hosts = createJobHosts(
      config,
      pino({ level: 'silent' }),
      new FsBlobStore({ dir: '/tmp/unused' }),
      {} as DocumentStore,
    );
    await expect(hosts.start()).rejects.toThrow(
      /the kubernetes executor could not start: the kubernetes executor needs a blob store its pods can reach \(blob.kind s3 or azure\)/,
    );
    await hosts.close();
  });
});
