/**
 * Ion's error hierarchy. Every error a user or a caller can see carries a stable string
 * `code` (listed in {@link ERROR_CODES} and in docs/errors.md) and a `retryable` flag that
 * says whether trying the same thing again may succeed.
 */

/** Every stable error code with its meaning. docs/errors.md is checked against this list. */
export const ERROR_CODES = {
  validation_failed: 'The input (request, pipeline file, config, module output) is invalid.',
  not_found: 'The named resource does not exist.',
  conflict: 'The request conflicts with the current state of the resource.',
  unauthorized: 'A valid API token is required.',
  forbidden: 'The token does not carry the scope this operation needs.',
  payload_too_large: 'The request body is larger than the server accepts.',
  unsupported_media_type: 'The request body has a content type this route does not accept.',
  unavailable: 'A backend (bus, store, blob store) cannot be reached; retry later.',
  timeout: 'The operation did not finish in time.',
  internal: 'An unexpected error inside Ion; the server log has details.',
  module_output_invalid: "The module's output broke the module contract.",
  module_failed: 'The module exited with a non-zero code.',
  module_timeout: 'The module ran longer than its timeout and was killed.',
  module_oom: 'The module was killed for passing its memory limit.',
  image_unavailable: "The module's image does not exist and cannot be pulled.",
  executor_unavailable:
    "This worker cannot run the module's executor (absent, or its engine is down).",
  worker_lost: 'The worker running the job stopped before the job finished.',
  job_cancelled: 'The job was cancelled on request while the attempt ran.',
  message_malformed: 'A bus message could not be parsed.',
  range_not_satisfiable: 'The requested byte range lies outside the blob.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface IonErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

/** Base class of every error Ion raises on purpose. */
export class IonError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: IonErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

export class ValidationError extends IonError {
  /** Where the problem is: a field path like `modules[0].timeout`, a file, a header. */
  readonly issues: readonly ValidationIssue[];
  constructor(message: string, issues: readonly ValidationIssue[] = [], options?: IonErrorOptions) {
    super('validation_failed', message, options);
    this.issues = issues;
  }
}

export interface ValidationIssue {
  path: string;
  message: string;
}

export class NotFoundError extends IonError {
  constructor(message: string, options?: IonErrorOptions) {
    super('not_found', message, options);
  }
}

export class ConflictError extends IonError {
  constructor(message: string, options?: IonErrorOptions) {
    super('conflict', message, options);
  }
}

export class UnavailableError extends IonError {
  constructor(message: string, options?: IonErrorOptions) {
    super('unavailable', message, { retryable: true, ...options });
  }
}

export class TimeoutError extends IonError {
  constructor(message: string, options?: IonErrorOptions) {
    super('timeout', message, { retryable: true, ...options });
  }
}

/** A module broke the file contract (bad JSON, undeclared event type, path escape...). */
export class ModuleOutputError extends IonError {
  constructor(message: string, options?: IonErrorOptions) {
    super('module_output_invalid', message, options);
  }
}

/** Wraps a driver error with the adapter's name as prefix, keeping the original as cause. */
export function wrapDriverError(adapter: string, action: string, cause: unknown): IonError {
  if (cause instanceof IonError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new UnavailableError(`${adapter}: ${action} failed: ${detail}`, { cause });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
