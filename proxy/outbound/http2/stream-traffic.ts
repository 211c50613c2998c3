/**
 * What traffic management (proxy/outbound/traffic/) needs from an app HTTP/2 request, and what it learns
 * from its answer: the `TrafficRequest` route rules match on, a rule's header edits on the tunnel request,
 * and the HTTP status outlier detection judges a gRPC call by.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { normalizeRequestPath } from '../../../policy/http-match.js';
import type { HeaderEdits, TrafficRequest } from '../../../policy/traffic/index.js';

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

/** Applies a rule's edits to the tunnel request's headers (names lower-case, as HTTP/2 requires). */
export function editTunnelHeaders(headers: OutgoingHttpHeaders, edits: HeaderEdits): void {
  for (const name of edits.remove ?? []) delete headers[name.toLowerCase()];
  for (const [name, value] of Object.entries(edits.set ?? {})) headers[name.toLowerCase()] = value;
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
