/**
 * The HTTP path's one "rescue" place: every failure a caller can see becomes a status and a stable code
 * here, so 403/400/502/503/504 mean the same thing on both sidecars and in the logs.
 *
 * Responses carry `trellis-error: <CODE>` and the correlation id (`trellis-correlation-id`, also
 * `x-request-id`), plus a one-line text body. Codes starting `TRELLIS_HTTP_APP_` come from the inbound
 * sidecar talking to its app; `TRELLIS_HTTP_UPSTREAM_` from the outbound sidecar talking to the tunnel.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { TrellisError, type ErrorSide } from '../../common/errors.js';
import { CORRELATION_HEADER } from './tunnel-protocol.js';
import { REQUEST_ID_HEADER } from './http-headers.js';

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

function kind(code: string, status: number, side: ErrorSide, retryable: boolean, message: string): HttpFailureKind {
  return Object.freeze({ code, status, side, retryable, message });
}

export const HTTP_FAILURES = Object.freeze({
  denied: kind('TRELLIS_HTTP_DENIED', 403, 'policy', false, 'denied by mesh policy'),
  badRequest: kind('TRELLIS_HTTP_BAD_REQUEST', 400, 'downstream', false, 'malformed request'),
  badPath: kind('TRELLIS_HTTP_BAD_PATH', 400, 'downstream', false, 'request path is not one the mesh can judge (see the path policy)'),
  upgradeRefused: kind('TRELLIS_HTTP_UPGRADE_REFUSED', 400, 'downstream', false, 'this upgrade protocol is not carried to this port'),
  requestTimeout: kind('TRELLIS_HTTP_REQUEST_TIMEOUT', 408, 'downstream', false, 'the request was not received in time'),
  headTooLarge: kind('TRELLIS_HTTP_HEAD_TOO_LARGE', 431, 'downstream', false, 'request head exceeds the limit'),
  appUnavailable: kind('TRELLIS_HTTP_APP_UNAVAILABLE', 503, 'upstream', false, 'the app refused the connection'),
  appConnectTimeout: kind('TRELLIS_HTTP_APP_CONNECT_TIMEOUT', 504, 'upstream', false, 'connecting to the app timed out'),
  appTimeout: kind('TRELLIS_HTTP_APP_TIMEOUT', 504, 'upstream', false, 'the app sent nothing within the idle timeout'),
  appReset: kind('TRELLIS_HTTP_APP_RESET', 502, 'upstream', false, 'the app closed the connection before responding'),
  appBadResponse: kind('TRELLIS_HTTP_APP_BAD_RESPONSE', 502, 'upstream', false, 'the app sent a malformed response'),
  appOverloaded: kind('TRELLIS_HTTP_APP_OVERLOADED', 503, 'upstream', true, 'too many requests are waiting for an app connection'),
  noEndpoint: kind('TRELLIS_HTTP_NO_ENDPOINT', 503, 'upstream', false, 'the destination service has no endpoint'),
  upstreamConnect: kind('TRELLIS_HTTP_UPSTREAM_CONNECT_FAILED', 503, 'upstream', true, 'no endpoint of the destination could be reached'),
  upstreamReset: kind('TRELLIS_HTTP_UPSTREAM_RESET', 502, 'upstream', false, 'the destination sidecar reset the request'),
  upstreamTimeout: kind('TRELLIS_HTTP_UPSTREAM_TIMEOUT', 504, 'upstream', false, 'the destination sent nothing within the idle timeout'),
  unknownDestination: kind('TRELLIS_HTTP_UNKNOWN_DESTINATION', 502, 'internal', false, 'no destination is known for this connection'),
});

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

/** The one-line body of a failure response; never names internal addresses. */
export function failureBody(failure: HttpFailure, correlationId: string): string {
  return `${failure.message} (${failure.code}, correlation id ${correlationId})\n`;
}
