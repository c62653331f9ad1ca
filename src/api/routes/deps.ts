import type { Logger } from 'pino';
import type { Control } from '../../app/control.js';
import type { AuthDeps } from '../auth.js';

/**
 * What the route files need, and all they may import from the server's side: each route file
 * takes this (or a `Pick` of it), never `server.ts`, which only composes them.
 */
export interface RouteDeps {
  /** The operations behind the API, one object per resource (`control.events`, ...). */
  control: Control;
  logger: Logger;
  /** Token checks and the token routes; without it the API has neither. */
  auth?: AuthDeps;
  /**
   * The largest file one gateway upload may carry (a multipart file part, or the data of
   * a binary-mode CloudEvent). Default `DEFAULT_GATEWAY_MAX_FILE_BYTES` (10 GiB).
   */
  gatewayMaxFileBytes?: number;
  /** The built dashboard served at /ui; default `dist/web` of this package. */
  uiDir?: string;
}
