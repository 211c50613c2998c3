/**
 * The end of one HTTP request at the inbound sidecar, however it was carried (an HTTP/2 request or a lane)
 * and however it ended (answered by the app, refused, failed): its metrics and its access log line.
 */
import { serviceLabel } from '../../core/peer-identity.js';
import type { InboundHttpDeps } from './context.js';

export interface InboundRequestRecord {
  readonly peer: { readonly namespace: string; readonly service: string; readonly zone?: string };
  readonly local: { readonly namespace: string; readonly service: string };
  readonly correlationId: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The mesh's code when the mesh answered (a refusal or a failure). */
  readonly code?: string;
  /** performance.now() when the request arrived. */
  readonly started: number;
}

export function recordInboundRequest(deps: InboundHttpDeps, r: InboundRequestRecord, grpc?: { readonly status: string; readonly method: string }): void {
  const seconds = (performance.now() - r.started) / 1000;
  const source = serviceLabel(r.peer);
  const destination = serviceLabel(r.local);
  deps.httpMetrics.record('inbound', source, destination, r.status, seconds);
  if (grpc !== undefined) deps.httpMetrics.recordGrpc?.('inbound', source, destination, grpc.method, grpc.status, seconds);
  if (deps.accessLog) {
    deps.logger.info(
      { direction: 'inbound', correlationId: r.correlationId, source, sourceZone: r.peer.zone ?? 'unknown', destination, method: r.method, path: r.path, status: r.status, code: r.code, grpcStatus: grpc?.status, ms: Math.round(seconds * 1000) },
      'http access',
    );
  }
}
