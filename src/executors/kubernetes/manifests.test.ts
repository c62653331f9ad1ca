import { Job } from 'kubernetes-models/batch/v1/Job';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../config/config.js';
import type { IonEvent, ModuleRecord } from '../../core/types.js';
import { HANDLER_JOB_ENV, parseHandlerJob } from './handler-protocol.js';
import {
  blobHandlerEnv,
  buildJobManifest,
  jobName,
  resourceRequirements,
  type JobManifestInput,
} from './manifests.js';

const settings = loadConfig({
  env: {},
  flags: {
    executor: {
      kubernetes: {
        namespace: 'pipelines',
        serviceAccount: 'ion-modules',
        imagePullSecrets: ['registry-cred'],
        nodeSelector: { pool: 'gpu' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        blobSecret: 'ion-blob',
      },
    },
  },
}).executor.kubernetes;

const event: IonEvent = {
  eventId: 'ev-1',
  type: 'image.uploaded',
  correlationId: 'corr-1',
  parentEventId: null,
  source: 'api',
  sourceJobId: null,
  data: [{ key: 'colour', value: 'red' }],
  files: [{ path: 'a/b.png', sha256: 'a'.repeat(64), size: 3 }],
  createdAt: '2026-12-04T00:00:00.000Z',
};

function moduleRecord(over: Partial<ModuleRecord> = {}): ModuleRecord {
  return {
    name: 'detect',
    subscribes: ['image.uploaded'],
    publishes: ['face.found'],
    executor: 'kubernetes',
    run: { image: 'example/detect:1', args: ['--fast'], pull: 'always', user: '1000:2000' },
    retries: 1,
    timeoutMs: 90_000,
    concurrency: 1,
    env: { MODEL: 'small' },
    resources: { cpu: 1.5, memoryBytes: 512 * 1024 * 1024, gpu: 1 },
    version: 3,
    paused: false,
    createdAt: '',
    updatedAt: '',
    ...over,
  };
}

function input(over: Partial<JobManifestInput> = {}): JobManifestInput {
  return {
    jobId: '6f1c2a4e-8d0b-4a59-9c61-2f7b1c3d4e5f',
    attempt: 2,
    module: moduleRecord(),
    event,
    baseEnv: { PATH: '/host/bin', HOME: '/root', LANG: 'C.UTF-8' },
    settings,
    blobEnv: blobHandlerEnv({
      kind: 's3',
      bucket: 'ion-data',
      prefix: 'p/',
      region: 'eu-west-1',
      forcePathStyle: false,
      checksums: 'when_supported',
      accessKeyId: 'AKIA-SECRET',
      secretAccessKey: 'very-secret',
    }),
    ...over,
  };
}

const envOf = (c: { env?: { name: string; value?: string }[] }): Record<string, string> =>
  Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? '']));

describe('Kubernetes manifests', () => {
  it('build a Job that the Kubernetes API schema accepts', () => {
    const manifest = buildJobManifest(input());
    expect(() => new Job(manifest as never).validate()).not.toThrow();
  });

  it('are checked by a schema validator that does reject a malformed Job', () => {
    const manifest = buildJobManifest(input()) as unknown as {
      spec: { backoffLimit: unknown };
    };
    manifest.spec.backoffLimit = 'none';
    expect(() => new Job(manifest as never).validate()).toThrow();
  });

  it('run prepare and the module as init containers and collect as the main container, sharing /ion', () => {
    const spec = buildJobManifest(input()).spec!.template.spec!;
    expect(spec.initContainers!.map((c) => c.name)).toEqual(['prepare', 'module']);
    expect(spec.containers.map((c) => c.name)).toEqual(['collect']);
    expect(spec.volumes).toEqual([{ name: 'ion', emptyDir: {} }]);
    for (const c of [...spec.initContainers!, ...spec.containers])
      expect(c.volumeMounts).toEqual([{ name: 'ion', mountPath: '/ion' }]);
    expect(spec.initContainers![0]!.command).toEqual([
      'ion',
      'handler',
      'prepare',
      '--dir',
      '/ion',
    ]);
    expect(spec.containers[0]!.command).toEqual(['ion', 'handler', 'collect', '--dir', '/ion']);
    expect(spec.restartPolicy).toBe('Never');
  });

  it('leave retries to Ion, bound the pod by a deadline and clean finished Jobs up', () => {
    const job = buildJobManifest(input());
    expect(job.spec!.backoffLimit).toBe(0);
    // pending 300 s + timeout 90 s + the handlers' allowance of 600 s
    expect(job.spec!.activeDeadlineSeconds).toBe(990);
    expect(job.spec!.ttlSecondsAfterFinished).toBe(300);
  });

  it('name the Job deterministically from the job id and attempt', () => {
    const a = buildJobManifest(input());
    expect(a.metadata!.name).toBe('ion-6f1c2a4e-8d0b-4a59-9c61-2f7b1c3d4e5f-a2');
    expect(buildJobManifest(input()).metadata!.name).toBe(a.metadata!.name);
    expect(jobName('Not A DNS Label!', 1)).toMatch(/^ion-[0-9a-f]{32}-a1$/);
    expect(jobName('x'.repeat(200), 12).length).toBeLessThanOrEqual(63);
  });

  it("give the module its image, arguments, pull policy, user, resources and the contract's variables", () => {
    const module = buildJobManifest(input()).spec!.template.spec!.initContainers![1]!;
    expect(module.image).toBe('example/detect:1');
    expect(module.command).toBeUndefined(); // the image's entrypoint runs
    expect(module.args).toEqual(['--fast']);
    expect(module.imagePullPolicy).toBe('Always');
    expect(module.workingDir).toBe('/ion');
    expect(module.securityContext).toEqual({ runAsUser: 1000, runAsGroup: 2000 });
    expect(module.resources).toEqual({
      limits: { cpu: '1500m', memory: String(512 * 1024 * 1024), 'nvidia.com/gpu': '1' },
      requests: { cpu: '1500m', memory: String(512 * 1024 * 1024) },
    });
    const env = envOf(module);
    expect(env).toMatchObject({
      HANDLER_BASE_DIR: '/ion',
      ION_BASE_DIR: '/ion',
      ION_MODULE: 'detect',
      ION_EVENT_ID: 'ev-1',
      ION_ATTEMPT: '2',
      MODEL: 'small',
      LANG: 'C.UTF-8',
    });
    // The worker host's PATH and HOME would break the image's own.
    expect(env.PATH).toBeUndefined();
    expect(env.HOME).toBeUndefined();
  });

  it('run a module declared with a command in the runtime image', () => {
    const module = buildJobManifest(
      input({ module: moduleRecord({ run: { command: ['python3', '-c', 'print(1)'] } }) }),
    ).spec!.template.spec!.initContainers![1]!;
    expect(module.image).toBe('ion/runtime:local');
    expect(module.command).toEqual(['python3', '-c', 'print(1)']);
    expect(module.imagePullPolicy).toBe('IfNotPresent');
    expect(module.securityContext).toBeUndefined();
  });

  it('never give the module the blob credentials, the job description or API credentials', () => {
    const job = buildJobManifest(input());
    const spec = job.spec!.template.spec!;
    const module = spec.initContainers![1]!;
    expect(module.envFrom).toBeUndefined();
    expect(
      Object.keys(envOf(module)).filter((k) => k.startsWith('ION_S3') || k === 'ION_BLOB'),
    ).toEqual([]);
    expect(envOf(module)[HANDLER_JOB_ENV]).toBeUndefined();
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.enableServiceLinks).toBe(false);
    // The worker's own credentials never enter the manifest, only the Secret's name.
    expect(JSON.stringify(job)).not.toContain('very-secret');
    expect(JSON.stringify(job)).not.toContain('AKIA-SECRET');
    for (const handler of [spec.initContainers![0]!, spec.containers[0]!]) {
      expect(handler.envFrom).toEqual([{ secretRef: { name: 'ion-blob' } }]);
      expect(envOf(handler)).toMatchObject({
        ION_BLOB: 's3',
        ION_S3_BUCKET: 'ion-data',
        ION_S3_PREFIX: 'p/',
      });
    }
  });

  it('pass prepare the event and collect the publishable types through ION_JOB', () => {
    const spec = buildJobManifest(input()).spec!.template.spec!;
    const prepare = parseHandlerJob(envOf(spec.initContainers![0]!)[HANDLER_JOB_ENV]!, 'ION_JOB');
    expect(prepare.event).toEqual(event);
    const collect = parseHandlerJob(envOf(spec.containers[0]!)[HANDLER_JOB_ENV]!, 'ION_JOB');
    expect(collect).toMatchObject({ attempt: 2, module: 'detect', publishes: ['face.found'] });
    expect(collect.event).toBeUndefined();
  });

  it('carry the configured service account, pull secrets, node selector and tolerations', () => {
    const spec = buildJobManifest(input()).spec!.template.spec!;
    expect(spec.serviceAccountName).toBe('ion-modules');
    expect(spec.imagePullSecrets).toEqual([{ name: 'registry-cred' }]);
    expect(spec.nodeSelector).toEqual({ pool: 'gpu' });
    expect(spec.tolerations).toEqual([
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
    ]);
  });

  it('refuse a user name, which a pod cannot resolve, naming the module and the field', () => {
    expect(() =>
      buildJobManifest(input({ module: moduleRecord({ run: { image: 'x:1', user: 'nobody' } }) })),
    ).toThrow(/module detect: run.user "nobody" must be a numeric uid/);
  });

  it('refuse an event too large for a pod environment with a clear message', () => {
    const big = { ...event, data: [{ key: 'blob', value: 'x'.repeat(120 * 1024) }] };
    expect(() => buildJobManifest(input({ event: big }))).toThrow(
      /event ev-1 is too large for the kubernetes executor: .* KiB/,
    );
  });

  it('refuse the filesystem blob store, which pods cannot reach', () => {
    expect(() => blobHandlerEnv({ kind: 'fs' })).toThrow(/needs a blob store its pods can reach/);
    expect(
      blobHandlerEnv({
        kind: 'azure',
        connectionString: 'AccountKey=secret',
        container: 'c1c',
        prefix: '',
      }),
    ).toEqual({ ION_BLOB: 'azure', ION_AZURE_CONTAINER: 'c1c', ION_AZURE_PREFIX: '' });
  });

  it('leave resources empty when the module sets none and give GPUs as limits only', () => {
    expect(resourceRequirements({})).toEqual({});
    expect(resourceRequirements({ gpu: 2 })).toEqual({ limits: { 'nvidia.com/gpu': '2' } });
  });
});
