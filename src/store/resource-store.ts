import type { DocumentStore, StoreCapabilities } from './document-store.js';

/**
 * How a store runs one operation of the port:
 * - `read`: reads only, on any connection;
 * - `write`: several changes in one transaction (the lifecycle's transactions);
 * - `statement`: a change one statement makes atomically (a store may still wrap it);
 * - `snapshot`: several reads that must see one consistent state (a trace).
 */
export type StoreMode = 'read' | 'write' | 'statement' | 'snapshot';

/** Every operation of the port, lifecycle and capabilities aside. */
export type StoreOperation = Exclude<keyof DocumentStore, 'start' | 'close' | 'capabilities'>;

/**
 * An adapter's statements for each operation: the port's method with the adapter's handle
 * (a database, a pooled connection) first, synchronous or not.
 */
export type StoreOps<H> = {
  [K in StoreOperation]: (
    handle: H,
    ...args: Parameters<DocumentStore[K]>
  ) => Awaited<ReturnType<DocumentStore[K]>> | ReturnType<DocumentStore[K]>;
};

/**
 * How each operation runs, and the words that name it in an error ("postgres-store: get
 * module failed: ..."), the same for every adapter.
 */
const OPERATIONS: { readonly [K in StoreOperation]: readonly [StoreMode, string] } = {
  upsertModule: ['write', 'upsert module'],
  getModule: ['read', 'get module'],
  listModules: ['read', 'list modules'],
  deleteModule: ['write', 'delete module'],
  modulesRevision: ['read', 'read modules revision'],
  setModulePaused: ['write', 'set module paused'],
  listModuleVersions: ['read', 'list module versions'],
  insertRootEvent: ['write', 'insert root event'],
  getEvent: ['read', 'get event'],
  pendingOutbox: ['read', 'read outbox'],
  markPublished: ['statement', 'mark outbox published'],
  getJob: ['read', 'get job'],
  listJobs: ['read', 'list jobs'],
  listAttempts: ['read', 'list attempts'],
  beginAttempt: ['write', 'begin attempt'],
  renewAttempt: ['write', 'renew attempt'],
  requestCancel: ['write', 'cancel job'],
  failAttempt: ['write', 'fail attempt'],
  commitAttempt: ['write', 'commit attempt'],
  getSettlement: ['read', 'get settlement'],
  claimSettlements: ['statement', 'claim settlements'],
  recordSettledEvent: ['write', 'record settled event'],
  closeSettlement: ['statement', 'close settlement'],
  addDeadLetter: ['statement', 'add dead letter'],
  listDeadLetters: ['read', 'list dead letters'],
  getDeadLetter: ['read', 'get dead letter'],
  redriveDeadLetter: ['write', 'redrive dead letter'],
  discardDeadLetter: ['statement', 'discard dead letter'],
  addReplayJobs: ['write', 'add replay jobs'],
  getReplay: ['read', 'get replay'],
  listReplays: ['read', 'list replays'],
  listInsights: ['read', 'list insights'],
  trace: ['snapshot', 'trace'],
  listEvents: ['read', 'list events'],
  createToken: ['statement', 'create token'],
  findTokenByHash: ['read', 'find token'],
  listTokens: ['read', 'list tokens'],
  revokeToken: ['statement', 'revoke token'],
  touchToken: ['statement', 'touch token'],
};

/**
 * The port's operations, once for every document store: each one runs the adapter's
 * statement ({@link StoreOps}) the way its {@link StoreMode} says, through the adapter's
 * `run` (which owns connections, transactions and the wrapping of driver errors). An
 * adapter is its connection handling, its `ops` (one file per resource) and `run`.
 */
export abstract class ResourceDocumentStore<H> implements DocumentStore {
  abstract readonly capabilities: StoreCapabilities;
  protected abstract readonly ops: StoreOps<H>;
  abstract start(): Promise<void>;
  abstract close(): Promise<void>;

  /** Runs `fn` on a handle as `mode` says; driver errors are wrapped with `action`. */
  protected abstract run<T>(
    mode: StoreMode,
    action: string,
    fn: (handle: H) => T | Promise<T>,
  ): Promise<T>;

  private call<K extends StoreOperation>(
    op: K,
    ...args: Parameters<DocumentStore[K]>
  ): ReturnType<DocumentStore[K]> {
    const [mode, action] = OPERATIONS[op];
    const fn = this.ops[op] as (handle: H, ...rest: unknown[]) => unknown;
    return this.run(mode, action, (handle) => fn(handle, ...args)) as ReturnType<DocumentStore[K]>;
  }

  upsertModule(
    ...a: Parameters<DocumentStore['upsertModule']>
  ): ReturnType<DocumentStore['upsertModule']> {
    return this.call('upsertModule', ...a);
  }

  getModule(...a: Parameters<DocumentStore['getModule']>): ReturnType<DocumentStore['getModule']> {
    return this.call('getModule', ...a);
  }

  listModules(
    ...a: Parameters<DocumentStore['listModules']>
  ): ReturnType<DocumentStore['listModules']> {
    return this.call('listModules', ...a);
  }

  deleteModule(
    ...a: Parameters<DocumentStore['deleteModule']>
  ): ReturnType<DocumentStore['deleteModule']> {
    return this.call('deleteModule', ...a);
  }

  modulesRevision(
    ...a: Parameters<DocumentStore['modulesRevision']>
  ): ReturnType<DocumentStore['modulesRevision']> {
    return this.call('modulesRevision', ...a);
  }

  setModulePaused(
    ...a: Parameters<DocumentStore['setModulePaused']>
  ): ReturnType<DocumentStore['setModulePaused']> {
    return this.call('setModulePaused', ...a);
  }

  listModuleVersions(
    ...a: Parameters<DocumentStore['listModuleVersions']>
  ): ReturnType<DocumentStore['listModuleVersions']> {
    return this.call('listModuleVersions', ...a);
  }

  insertRootEvent(
    ...a: Parameters<DocumentStore['insertRootEvent']>
  ): ReturnType<DocumentStore['insertRootEvent']> {
    return this.call('insertRootEvent', ...a);
  }

  getEvent(...a: Parameters<DocumentStore['getEvent']>): ReturnType<DocumentStore['getEvent']> {
    return this.call('getEvent', ...a);
  }

  pendingOutbox(
    ...a: Parameters<DocumentStore['pendingOutbox']>
  ): ReturnType<DocumentStore['pendingOutbox']> {
    return this.call('pendingOutbox', ...a);
  }

  markPublished(
    ...a: Parameters<DocumentStore['markPublished']>
  ): ReturnType<DocumentStore['markPublished']> {
    return this.call('markPublished', ...a);
  }

  getJob(...a: Parameters<DocumentStore['getJob']>): ReturnType<DocumentStore['getJob']> {
    return this.call('getJob', ...a);
  }

  listJobs(...a: Parameters<DocumentStore['listJobs']>): ReturnType<DocumentStore['listJobs']> {
    return this.call('listJobs', ...a);
  }

  listAttempts(
    ...a: Parameters<DocumentStore['listAttempts']>
  ): ReturnType<DocumentStore['listAttempts']> {
    return this.call('listAttempts', ...a);
  }

  beginAttempt(
    ...a: Parameters<DocumentStore['beginAttempt']>
  ): ReturnType<DocumentStore['beginAttempt']> {
    return this.call('beginAttempt', ...a);
  }

  renewAttempt(
    ...a: Parameters<DocumentStore['renewAttempt']>
  ): ReturnType<DocumentStore['renewAttempt']> {
    return this.call('renewAttempt', ...a);
  }

  requestCancel(
    ...a: Parameters<DocumentStore['requestCancel']>
  ): ReturnType<DocumentStore['requestCancel']> {
    return this.call('requestCancel', ...a);
  }

  failAttempt(
    ...a: Parameters<DocumentStore['failAttempt']>
  ): ReturnType<DocumentStore['failAttempt']> {
    return this.call('failAttempt', ...a);
  }

  commitAttempt(
    ...a: Parameters<DocumentStore['commitAttempt']>
  ): ReturnType<DocumentStore['commitAttempt']> {
    return this.call('commitAttempt', ...a);
  }

  getSettlement(
    ...a: Parameters<DocumentStore['getSettlement']>
  ): ReturnType<DocumentStore['getSettlement']> {
    return this.call('getSettlement', ...a);
  }

  claimSettlements(
    ...a: Parameters<DocumentStore['claimSettlements']>
  ): ReturnType<DocumentStore['claimSettlements']> {
    return this.call('claimSettlements', ...a);
  }

  recordSettledEvent(
    ...a: Parameters<DocumentStore['recordSettledEvent']>
  ): ReturnType<DocumentStore['recordSettledEvent']> {
    return this.call('recordSettledEvent', ...a);
  }

  closeSettlement(
    ...a: Parameters<DocumentStore['closeSettlement']>
  ): ReturnType<DocumentStore['closeSettlement']> {
    return this.call('closeSettlement', ...a);
  }

  addDeadLetter(
    ...a: Parameters<DocumentStore['addDeadLetter']>
  ): ReturnType<DocumentStore['addDeadLetter']> {
    return this.call('addDeadLetter', ...a);
  }

  listDeadLetters(
    ...a: Parameters<DocumentStore['listDeadLetters']>
  ): ReturnType<DocumentStore['listDeadLetters']> {
    return this.call('listDeadLetters', ...a);
  }

  getDeadLetter(
    ...a: Parameters<DocumentStore['getDeadLetter']>
  ): ReturnType<DocumentStore['getDeadLetter']> {
    return this.call('getDeadLetter', ...a);
  }

  redriveDeadLetter(
    ...a: Parameters<DocumentStore['redriveDeadLetter']>
  ): ReturnType<DocumentStore['redriveDeadLetter']> {
    return this.call('redriveDeadLetter', ...a);
  }

  discardDeadLetter(
    ...a: Parameters<DocumentStore['discardDeadLetter']>
  ): ReturnType<DocumentStore['discardDeadLetter']> {
    return this.call('discardDeadLetter', ...a);
  }

  addReplayJobs(
    ...a: Parameters<DocumentStore['addReplayJobs']>
  ): ReturnType<DocumentStore['addReplayJobs']> {
    return this.call('addReplayJobs', ...a);
  }

  getReplay(...a: Parameters<DocumentStore['getReplay']>): ReturnType<DocumentStore['getReplay']> {
    return this.call('getReplay', ...a);
  }

  listReplays(
    ...a: Parameters<DocumentStore['listReplays']>
  ): ReturnType<DocumentStore['listReplays']> {
    return this.call('listReplays', ...a);
  }

  listInsights(
    ...a: Parameters<DocumentStore['listInsights']>
  ): ReturnType<DocumentStore['listInsights']> {
    return this.call('listInsights', ...a);
  }

  trace(...a: Parameters<DocumentStore['trace']>): ReturnType<DocumentStore['trace']> {
    return this.call('trace', ...a);
  }

  listEvents(
    ...a: Parameters<DocumentStore['listEvents']>
  ): ReturnType<DocumentStore['listEvents']> {
    return this.call('listEvents', ...a);
  }

  createToken(
    ...a: Parameters<DocumentStore['createToken']>
  ): ReturnType<DocumentStore['createToken']> {
    return this.call('createToken', ...a);
  }

  findTokenByHash(
    ...a: Parameters<DocumentStore['findTokenByHash']>
  ): ReturnType<DocumentStore['findTokenByHash']> {
    return this.call('findTokenByHash', ...a);
  }

  listTokens(
    ...a: Parameters<DocumentStore['listTokens']>
  ): ReturnType<DocumentStore['listTokens']> {
    return this.call('listTokens', ...a);
  }

  revokeToken(
    ...a: Parameters<DocumentStore['revokeToken']>
  ): ReturnType<DocumentStore['revokeToken']> {
    return this.call('revokeToken', ...a);
  }

  touchToken(
    ...a: Parameters<DocumentStore['touchToken']>
  ): ReturnType<DocumentStore['touchToken']> {
    return this.call('touchToken', ...a);
  }
}
