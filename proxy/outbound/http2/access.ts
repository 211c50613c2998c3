/**
 * The end of one HTTP/2 request at the outbound sidecar: the HTTP metrics and access line of every
 * request, and for gRPC calls the gRPC status and method (outbound/http/access.ts for the rest).
 */
import type { OutboundHttpDeps } from '../http/deps.js';
import { recordOutboundRequest, type OutboundRequestRecord } from '../http/access.js';
import { grpcMethodOfPath } from '../../../policy/index.js';

export interface OutboundH2RequestRecord extends OutboundRequestRecord {
  /** For gRPC calls: the status the app saw (undefined: none came, e.g. a reset). */
  readonly grpcStatus: string | undefined;
}

export function recordOutboundH2Request(deps: OutboundHttpDeps, r: OutboundH2RequestRecord): void {
  recordOutboundRequest(deps, r, r.grpcStatus === undefined ? undefined : { status: r.grpcStatus, method: grpcMethodOfPath(r.path) ?? '-' });
}
