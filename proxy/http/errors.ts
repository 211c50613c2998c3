/**
 * The one place a failure or refusal the mesh produced becomes what a peer sees, so 403/400/502/503/504
 * mean the same thing on both sidecars, on every path, and in the logs. Codes, statuses, sides and texts
 * are registry entries (common/error-codes.ts); here they only take their wire shape.
 *
 * HTTP responses carry `trellis-error: <CODE>` and the correlation id (`trellis-correlation-id`, also
 * `x-request-id`), plus a one-line text body: `HTTP_APP_*` come from the inbound sidecar talking to its app,
 * `HTTP_UPSTREAM_*` from the outbound sidecar talking to the tunnel. A refused tunnel stream (a TCP CONNECT
 * or a misaddressed request, `STREAM_*`) is answered the same way, plus `trellis-reason`, the short lower-case
 * form of its code that peers and metrics have always used (`policy-denied`, `app-refused`, ...).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { TrellisError, type ErrorSide } from '../../common/errors.js';
import { ERRORS, type ErrorCodeInfo } from '../../common/error-codes.js';
import { CORRELATION_HEADER, DENIED_BY_HEADER, REASON_HEADER } from '../core/tunnel-protocol.js';
import { REQUEST_ID_HEADER } from './header-rules.js';

/** Response header naming the stable code of a failure the mesh produced (not the app). */
export const ERROR_HEADER = 'trellis-error';

export interface HttpFailureKind {
  readonly code: string;
  readonly status: number;
  readonly side: ErrorSide;
  /** Safe to retry on another endpoint: nothing reached an app. */
  readonly retryable: boolean;
  readonly message: string;
}

/** A view of a registry entry (common/error-codes.ts): the code, status, side and text live there. */
function kind(info: ErrorCodeInfo): HttpFailureKind {
  return Object.freeze({ code: info.code, status: info.status, side: info.side, retryable: info.retryable, message: info.summary });
}

export const HTTP_FAILURES = Object.freeze({
  denied: kind(ERRORS.HTTP_DENIED),
  badRequest: kind(ERRORS.HTTP_BAD_REQUEST),
  badPath: kind(ERRORS.HTTP_BAD_PATH),
  upgradeRefused: kind(ERRORS.HTTP_UPGRADE_REFUSED),
  requestTimeout: kind(ERRORS.HTTP_REQUEST_TIMEOUT),
  headTooLarge: kind(ERRORS.HTTP_HEAD_TOO_LARGE),
  appUnavailable: kind(ERRORS.HTTP_APP_UNAVAILABLE),
  appConnectTimeout: kind(ERRORS.HTTP_APP_CONNECT_TIMEOUT),
  appTimeout: kind(ERRORS.HTTP_APP_TIMEOUT),
  appReset: kind(ERRORS.HTTP_APP_RESET),
  appBadResponse: kind(ERRORS.HTTP_APP_BAD_RESPONSE),
  appOverloaded: kind(ERRORS.HTTP_APP_OVERLOADED),
  noEndpoint: kind(ERRORS.HTTP_NO_ENDPOINT),
  circuitOpen: kind(ERRORS.HTTP_CIRCUIT_BREAKER_OPEN),
  upstreamConnect: kind(ERRORS.HTTP_UPSTREAM_CONNECT_FAILED),
  upstreamReset: kind(ERRORS.HTTP_UPSTREAM_RESET),
  upstreamTimeout: kind(ERRORS.HTTP_UPSTREAM_TIMEOUT),
  unknownDestination: kind(ERRORS.HTTP_UNKNOWN_DESTINATION),
  deadlineExceeded: kind(ERRORS.HTTP_DEADLINE_EXCEEDED),
  notHttp2: kind(ERRORS.HTTP_NOT_HTTP2),
});

/** Refusals of a tunnel stream before any app byte moved (inbound/tcp/stream-refusal.ts). */
export const STREAM_REFUSALS = Object.freeze({
  badTarget: kind(ERRORS.STREAM_BAD_TARGET),
  misdirected: kind(ERRORS.STREAM_MISDIRECTED),
  unknownPort: kind(ERRORS.STREAM_UNKNOWN_PORT),
  httpNotSupported: kind(ERRORS.STREAM_HTTP_NOT_SUPPORTED),
  policyDenied: kind(ERRORS.STREAM_POLICY_DENIED),
  appRefused: kind(ERRORS.STREAM_APP_REFUSED),
  appUnreachable: kind(ERRORS.STREAM_APP_UNREACHABLE),
  appConnectTimeout: kind(ERRORS.STREAM_APP_CONNECT_TIMEOUT),
  noHealthyEndpoint: kind(ERRORS.STREAM_NO_HEALTHY_ENDPOINT),
  unknownService: kind(ERRORS.STREAM_UNKNOWN_SERVICE),
  zoneNotAdmitted: kind(ERRORS.STREAM_ZONE_NOT_ADMITTED),
  identityRefused: kind(ERRORS.STREAM_IDENTITY_REFUSED),
});

/** `trellis-reason` of each stream refusal: its registry key's tail in lower case, `_` as `-` (`policy-denied`). */
const STREAM_REASONS: ReadonlyMap<string, string> = new Map(
  Object.entries(ERRORS)
    .filter(([key]) => key.startsWith('STREAM_'))
    .map(([key, info]) => [info.code, key.slice('STREAM_'.length).toLowerCase().replaceAll('_', '-')]),
);

/** The short reason a refused stream carries; a code that is no stream refusal is sent as it is. */
export function streamReason(failure: Pick<HttpFailureKind, 'code'>): string {
  return STREAM_REASONS.get(failure.code) ?? failure.code;
}

/** A failure of one request, raised inside the HTTP path and turned into a response by `failureResponse*`. */
export class HttpFailure extends TrellisError {
  readonly status: number;

  constructor(failure: HttpFailureKind, detail?: string, cause?: unknown) {
    super(failure.code, detail === undefined ? failure.message : `${failure.message}: ${detail}`, {
      side: failure.side,
      retryable: failure.retryable,
      cause,
    });
    this.name = 'HttpFailure';
    this.status = failure.status;
  }
}

/** Maps a socket or parser error of the inbound's app connection to what the caller is told. */
export function appFailure(err: unknown, timedOut: boolean, connected: boolean): HttpFailure {
  if (err instanceof HttpFailure) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (timedOut) return new HttpFailure(connected ? HTTP_FAILURES.appTimeout : HTTP_FAILURES.appConnectTimeout, undefined, err);
  if (code === 'ECONNREFUSED' || code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new HttpFailure(HTTP_FAILURES.appUnavailable, String(code), err);
  if (code === 'ETIMEDOUT') return new HttpFailure(HTTP_FAILURES.appConnectTimeout, undefined, err);
  if (typeof code === 'string' && code.startsWith('HPE_')) return new HttpFailure(HTTP_FAILURES.appBadResponse, code, err);
  return new HttpFailure(HTTP_FAILURES.appReset, typeof code === 'string' ? code : undefined, err);
}

/** Headers of a failure response (status included for HTTP/2; node:http takes the status separately). */
export function failureHeaders(failure: HttpFailure, correlationId: string, body: string, forH2: boolean): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    [ERROR_HEADER]: failure.code,
    [CORRELATION_HEADER]: correlationId,
    [REQUEST_ID_HEADER]: correlationId,
  };
  if (forH2) headers[':status'] = failure.status;
  return headers;
}

/**
 * Headers of a refused tunnel stream: a failure response's, plus `trellis-reason` and, for a policy denial,
 * the deciding policy and rule (every tunnel peer is authenticated, so the policy name may be disclosed).
 */
export function streamRefusalHeaders(failure: HttpFailure, correlationId: string, body: string, deniedBy: string | undefined): OutgoingHttpHeaders {
  const headers = failureHeaders(failure, correlationId, body, true);
  headers[REASON_HEADER] = streamReason(failure);
  if (deniedBy !== undefined) headers[DENIED_BY_HEADER] = deniedBy;
  return headers;
}

/** The one-line body of a failure response; never names internal addresses. */
export function failureBody(failure: HttpFailure, correlationId: string): string {
  return `${failure.message} (${failure.code}, correlation id ${correlationId})\n`;
}
