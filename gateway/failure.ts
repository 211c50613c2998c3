/**
 * The gateway's own refusals, shaped as every HTTP path of the mesh shapes them (proxy/http/errors.ts):
 * the registry's status and text, `trellis-error: <code>`, a correlation id also in the access line.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { ERRORS } from '../common/error-codes.js';
import { HttpFailure, failureBody, failureHeaders } from '../proxy/http/errors.js';

export type ClientResponse = ServerResponse | Http2ServerResponse;

type GatewayErrorKey = Extract<keyof typeof ERRORS, `GATEWAY_${string}`> | 'HTTP_HEAD_TOO_LARGE' | 'HTTP_REQUEST_TIMEOUT';

export function gatewayFailure(key: GatewayErrorKey, detail?: string): HttpFailure {
  const info = ERRORS[key];
  return new HttpFailure({ code: info.code, status: info.status, side: info.side, retryable: info.retryable, message: info.summary }, detail);
}

/** Answers `failure` unless a response already started (then the exchange is cut: nothing else is honest). */
export function respondFailure(res: ClientResponse, failure: HttpFailure, correlationId: string, extra: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = failureBody(failure, correlationId);
  const headers = { ...failureHeaders(failure, correlationId, body, false), ...extra };
  (res as ServerResponse).writeHead(failure.status, headers);
  res.end(body);
}
