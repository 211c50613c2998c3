/**
 * What traffic management (proxy/outbound/traffic/) needs from an app HTTP/2 request, and what it learns
 * from its answer: the `TrafficRequest` route rules match on, and the HTTP status outlier detection judges a gRPC call by.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import { normalizeRequestPath } from '../../../policy/http-match.js';
import type { TrafficRequest } from '../../../policy/traffic/index.js';

const NONE: readonly string[] = Object.freeze([]);

export function trafficRequestOfH2(headers: IncomingHttpHeaders, method: string, path: string): TrafficRequest {
  const q = path.indexOf('?');
  return {
    method,
    path: normalizeRequestPath(path),
    query: q < 0 ? '' : path.slice(q + 1),
    headerValues(name: string): readonly string[] {
      // Pseudo-headers are not headers: a rule naming `:path` must not see it (the validator refuses such names too).
      if (name.startsWith(':')) return NONE;
      const v = headers[name];
      return v === undefined ? NONE : typeof v === 'string' ? [v] : v;
    },
  };
}

/**
 * The HTTP status a gRPC call's outcome counts as for outlier detection, as Envoy maps it: a call is
 * `:status 200` whatever happened, so UNAVAILABLE must count as 503, DEADLINE_EXCEEDED as 504 and the
 * server's internal failures as 500, while a caller's own mistakes (INVALID_ARGUMENT, NOT_FOUND, ...)
 * say nothing bad about the endpoint.
 */
export function outlierStatusOfGrpc(grpcStatus: number): number {
  switch (grpcStatus) {
    case 14: // UNAVAILABLE
      return 503;
    case 4: // DEADLINE_EXCEEDED
      return 504;
    case 2: // UNKNOWN
    case 13: // INTERNAL
    case 15: // DATA_LOSS
      return 500;
    case 12: // UNIMPLEMENTED
      return 501;
    default:
      return 200;
  }
}
