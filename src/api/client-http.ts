import { IonError, UnavailableError, type ErrorCode, ERROR_CODES } from '../core/errors.js';
import { fetchTrusting, unreachableMessage, type Transport } from './client-transport.js';

/** An error answered by the API, with its stable code. */
export class ApiError extends IonError {
  readonly status: number;
  constructor(status: number, code: ErrorCode, message: string) {
    super(code, message);
    this.status = status;
  }
}

export function queryString(
  filter: Record<string, string | number | readonly string[] | undefined>,
): string {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v as readonly string[]) query.append(k, item);
    else query.set(k, String(v));
  }
  return query.size > 0 ? `?${query.toString()}` : '';
}

/**
 * The HTTP plumbing of {@link IonClient}: base URL, bearer token, transport (with a private
 * CA when given), and the mapping of error answers onto {@link ApiError}.
 */
export class ApiHttp {
  protected readonly baseUrl: string;
  protected readonly transport: Transport;
  constructor(
    baseUrl: string,
    protected readonly token?: string,
    /** `ca`: PEM CA certificates to trust besides the system ones (private CA, self-signed). */
    options: { ca?: string | Buffer } = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.transport = options.ca === undefined ? fetch : fetchTrusting(options.ca);
  }

  protected headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
      ...extra,
    };
  }

  protected async request(
    method: string,
    path: string,
    init: { json?: unknown; body?: RequestInit['body']; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    let response: Response;
    try {
      response = await this.transport(`${this.baseUrl}${path}`, {
        method,
        headers: this.headers({
          ...(init.json === undefined ? {} : { 'content-type': 'application/json' }),
          ...init.headers,
        }),
        body: init.json === undefined ? init.body : JSON.stringify(init.json),
        ...(init.body instanceof ReadableStream ? { duplex: 'half' } : {}),
      });
    } catch (err) {
      throw new UnavailableError(unreachableMessage(this.baseUrl, err), { cause: err });
    }
    if (!response.ok) throw await this.errorOf(response, method, path);
    return response;
  }

  protected async json<T>(method: string, path: string, json?: unknown): Promise<T> {
    const response = await this.request(method, path, json === undefined ? {} : { json });
    return (await response.json()) as T;
  }

  /** The ApiError of a non-2xx answer, read from the one error format (else its status line). */
  protected async errorOf(response: Response, method: string, path: string): Promise<ApiError> {
    let code: ErrorCode = 'internal';
    let message = `${method} ${path} answered ${response.status}`;
    try {
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      if (body.error?.code !== undefined && body.error.code in ERROR_CODES)
        code = body.error.code as ErrorCode;
      if (body.error?.message !== undefined) message = body.error.message;
    } catch {
      // not our error format: keep the status line
    }
    return new ApiError(response.status, code, message);
  }
}
