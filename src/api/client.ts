import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { UnavailableError } from '../core/errors.js';
import type {
  Attempt,
  BlobRef,
  DeadLetter,
  Job,
  JobState,
  KeyValue,
  ModuleRecord,
  ModuleSpec,
  Replay,
  ReplayStatus,
} from '../core/types.js';
import type { TokenView } from '../core/tokens.js';
import { ApiHttp, queryString } from './client-http.js';
import { unreachableMessage } from './client-transport.js';
import type {
  ApplyResult,
  DeadLetterSelector,
  EventView,
  InsightHitView,
  ReplayOutcome,
  ReplayRequest,
  TraceView,
} from './client-types.js';

export { ApiError } from './client-http.js';
export type {
  ApplyResult,
  DeadLetterSelector,
  EventView,
  InsightHitView,
  ReplayOutcome,
  ReplayRequest,
  TraceView,
} from './client-types.js';

/** The typed client of the v1 API, used by the CLI and tests. */
export class IonClient extends ApiHttp {
  health(): Promise<{ status: string }> {
    return this.json('GET', '/healthz');
  }

  applyPipeline(pipeline: unknown, prune = false): Promise<ApplyResult> {
    return this.json('POST', '/v1/pipelines/apply', { pipeline, prune });
  }

  async listModules(): Promise<ModuleRecord[]> {
    return (await this.json<{ modules: ModuleRecord[] }>('GET', '/v1/modules')).modules;
  }

  getModule(name: string): Promise<ModuleRecord> {
    return this.json('GET', `/v1/modules/${encodeURIComponent(name)}`);
  }

  /**
   * Streams a local file to the blob store. `onProgress(sent, total)` is called as each chunk is
   * read from the file into the request (bytes so far, and the file's size when the upload began).
   */
  async uploadFile(
    path: string,
    options: { onProgress?: (sent: number, total: number) => void } = {},
  ): Promise<BlobRef> {
    const onProgress = options.onProgress;
    const total = onProgress === undefined ? 0 : (await stat(path)).size;
    let body = Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>;
    if (onProgress !== undefined) {
      let sent = 0;
      body = body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            sent += chunk.byteLength;
            onProgress(sent, total);
            controller.enqueue(chunk);
          },
        }),
      );
    }
    const response = await this.request('PUT', '/v1/blobs', {
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    return (await response.json()) as BlobRef;
  }

  /** Streams a blob's content. */
  async downloadBlob(sha256: string): Promise<Readable> {
    const response = await this.request('GET', `/v1/blobs/${sha256}`);
    return Readable.fromWeb(response.body!);
  }

  publish(input: {
    type: string;
    data?: Record<string, string> | KeyValue[];
    files?: { path: string; sha256: string }[];
    idempotencyKey?: string;
  }): Promise<{ eventId: string; correlationId: string; created: boolean }> {
    return this.json('POST', '/v1/events', input);
  }

  getEvent(eventId: string): Promise<EventView> {
    return this.json('GET', `/v1/events/${encodeURIComponent(eventId)}`);
  }

  trace(correlationId: string): Promise<TraceView> {
    return this.json('GET', `/v1/traces/${encodeURIComponent(correlationId)}`);
  }

  async listJobs(
    filter: {
      module?: string;
      state?: JobState;
      correlationId?: string;
      eventId?: string;
      replayId?: string;
      since?: string;
      until?: string;
      limit?: number;
    } = {},
  ): Promise<Job[]> {
    const qs = queryString(filter);
    return (await this.json<{ jobs: Job[] }>('GET', `/v1/jobs${qs}`)).jobs;
  }

  getJob(jobId: string): Promise<{ job: Job; attempts: Attempt[] }> {
    return this.json('GET', `/v1/jobs/${encodeURIComponent(jobId)}`);
  }

  async jobLogs(jobId: string, attempt?: number): Promise<{ attempt: number; text: string }> {
    const response = await this.request(
      'GET',
      `/v1/jobs/${encodeURIComponent(jobId)}/logs${attempt === undefined ? '' : `?attempt=${attempt}`}`,
    );
    return { attempt: Number(response.headers.get('x-ion-attempt')), text: await response.text() };
  }

  async listDeadLetters(filter: { module?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const qs = queryString(filter);
    return (await this.json<{ deadLetters: DeadLetter[] }>('GET', `/v1/dead-letters${qs}`))
      .deadLetters;
  }

  redrive(id: string): Promise<{ job: Job | null }> {
    return this.json('POST', `/v1/dead-letters/${encodeURIComponent(id)}/redrive`);
  }

  async discardDeadLetter(id: string): Promise<void> {
    await this.request('DELETE', `/v1/dead-letters/${encodeURIComponent(id)}`);
  }

  // -- module admin --

  async deleteModule(name: string): Promise<void> {
    await this.request('DELETE', `/v1/modules/${encodeURIComponent(name)}`);
  }

  pauseModule(name: string): Promise<ModuleRecord> {
    return this.json('POST', `/v1/modules/${encodeURIComponent(name)}/pause`);
  }

  resumeModule(name: string): Promise<ModuleRecord> {
    return this.json('POST', `/v1/modules/${encodeURIComponent(name)}/resume`);
  }

  async moduleVersions(
    name: string,
  ): Promise<{ version: number; spec: ModuleSpec; createdAt: string }[]> {
    return (
      await this.json<{ versions: { version: number; spec: ModuleSpec; createdAt: string }[] }>(
        'GET',
        `/v1/modules/${encodeURIComponent(name)}/versions`,
      )
    ).versions;
  }

  redriveMany(selector: DeadLetterSelector): Promise<{ redriven: number; jobs: Job[] }> {
    return this.json('POST', '/v1/dead-letters/redrive', selector);
  }

  discardMany(selector: DeadLetterSelector): Promise<{ discarded: number }> {
    return this.json('POST', '/v1/dead-letters/discard', selector);
  }

  // -- event queries (listEvents) --
  listEvents(
    filter: {
      type?: string;
      source?: string;
      correlationId?: string;
      since?: string;
      until?: string;
      limit?: number;
      cursor?: string;
    } = {},
  ): Promise<{ events: EventView[]; nextCursor: string | null }> {
    return this.json('GET', `/v1/events${queryString(filter)}`);
  }

  eventLineage(
    eventId: string,
  ): Promise<{ event: EventView; ancestors: EventView[]; descendants: EventView[] }> {
    return this.json('GET', `/v1/events/${encodeURIComponent(eventId)}/lineage`);
  }

  async queryInsights(
    filter: {
      module?: string;
      key?: string;
      value?: string;
      valuePrefix?: string;
      /** `key=value` terms: only insights of jobs that also recorded each of them. */
      has?: readonly string[];
      correlationId?: string;
      since?: string;
      until?: string;
      limit?: number;
    } = {},
  ): Promise<InsightHitView[]> {
    return (
      await this.json<{ insights: InsightHitView[] }>('GET', `/v1/insights${queryString(filter)}`)
    ).insights;
  }

  /** Streams a blob (or the inclusive byte range `range` of it). */
  async getBlob(
    sha256: string,
    options: { range?: { start: number; end?: number } } = {},
  ): Promise<{ stream: Readable; contentType: string | null; size: number | null }> {
    const r = options.range;
    const response = await this.request('GET', `/v1/blobs/${encodeURIComponent(sha256)}`, {
      headers: r === undefined ? {} : { range: `bytes=${r.start}-${r.end ?? ''}` },
    });
    const length = response.headers.get('content-length');
    return {
      stream: Readable.fromWeb(response.body!),
      contentType: response.headers.get('content-type'),
      size: length === null ? null : Number(length),
    };
  }

  // -- replays, cancel, followed logs, single modules ------------------------------------------

  /** Runs a module again on one past event or on every event of a type in a time range. */
  replay(request: ReplayRequest): Promise<ReplayOutcome> {
    return this.json('POST', '/v1/replays', request);
  }

  getReplay(replayId: string): Promise<ReplayStatus> {
    return this.json('GET', `/v1/replays/${encodeURIComponent(replayId)}`);
  }

  async listReplays(filter: { module?: string; limit?: number } = {}): Promise<Replay[]> {
    return (await this.json<{ replays: Replay[] }>('GET', `/v1/replays${queryString(filter)}`))
      .replays;
  }

  /** Cancels a job: at once when it waits, within about a second when it runs. */
  cancelJob(jobId: string): Promise<{ status: 'cancelled' | 'cancelling'; job: Job }> {
    return this.json('POST', `/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
  }

  /**
   * Follows a job's log live: the stream ends when the attempt ends (with `attempt`), or when
   * the job ends (without it, following its retries).
   */
  async followJobLog(jobId: string, attempt?: number): Promise<Readable> {
    const qs = queryString({ follow: 'true', attempt });
    const response = await this.request('GET', `/v1/jobs/${encodeURIComponent(jobId)}/logs${qs}`);
    return Readable.fromWeb(response.body!);
  }

  /** Creates or updates one module from one pipeline-file entry. */
  putModule(
    name: string,
    module: Record<string, unknown>,
  ): Promise<{ module: ModuleRecord; change: 'created' | 'updated' | 'unchanged' }> {
    return this.json('PUT', `/v1/modules/${encodeURIComponent(name)}`, module);
  }

  // -- live stream, tokens ---------------------------------------------------------------------

  /**
   * Opens the live stream (`GET /v1/stream`: Server-Sent Events of job and event changes, see
   * docs/api.md) and returns its body once the server answered 200; read it with an SSE parser
   * (src/cli/sse.ts). `lastEventId` resumes after that message (sent as `Last-Event-ID`).
   * `signal` aborts the request, also while it is being opened, which the other calls cannot:
   * a stream stays open until its reader goes. Refusals throw ApiError like every other call.
   */
  async openLiveStream(
    filter: { correlationId?: string; module?: string } = {},
    options: { lastEventId?: string; signal?: AbortSignal } = {},
  ): Promise<Readable> {
    const path = `/v1/stream${queryString(filter)}`;
    const lastEventId = options.lastEventId ?? '';
    let response: Response;
    try {
      response = await this.transport(`${this.baseUrl}${path}`, {
        method: 'GET',
        headers: this.headers({
          accept: 'text/event-stream',
          ...(lastEventId === '' ? {} : { 'last-event-id': lastEventId }),
        }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      throw new UnavailableError(unreachableMessage(this.baseUrl, err), { cause: err });
    }
    if (!response.ok) throw await this.errorOf(response, 'GET', path);
    return Readable.fromWeb(response.body!);
  }

  /** Creates a token (`POST /v1/tokens`, scope admin); its value is in the answer only. */
  createToken(input: { name: string; scopes: string[] }): Promise<{ token: string } & TokenView> {
    return this.json('POST', '/v1/tokens', input);
  }

  /** Every token, revoked ones included, oldest first; never their values. */
  async listTokens(): Promise<TokenView[]> {
    return (await this.json<{ tokens: TokenView[] }>('GET', '/v1/tokens')).tokens;
  }

  /** Revokes a token: requests carrying it are refused from now on. */
  revokeToken(id: string): Promise<TokenView> {
    return this.json('DELETE', `/v1/tokens/${encodeURIComponent(id)}`);
  }
}
