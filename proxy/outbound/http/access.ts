/**
 * The end of one HTTP request at the outbound sidecar, however it was carried (a lane or an HTTP/2
 * request) and however it ended: its metrics and its access log line.
 */
import type { OutboundHttpDeps } from './deps.js';

export interface OutboundRequestRecord {
  /** `namespace/service` of the destination, or '-' when none was resolved. */
  readonly destination: string;
  readonly correlationId: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** The mesh's code when the mesh answered (a failure). */
  readonly code: string | undefined;
  /** Endpoints tried. */
  readonly attempts: number;
  /** performance.now() when the request arrived. */
  readonly started: number;
}

/** A gRPC call's status and method (proxy/outbound/http2/access.ts). */
export interface GrpcOutcome {
  readonly status: string;
  readonly method: string;
}

export function recordOutboundRequest(deps: OutboundHttpDeps, r: OutboundRequestRecord, grpc?: GrpcOutcome): void {
  const seconds = (performance.now() - r.started) / 1000;
  deps.httpMetrics.record('outbound', deps.sourceLabel, r.destination, r.status, seconds);
  if (grpc !== undefined) deps.httpMetrics.recordGrpc?.('outbound', deps.sourceLabel, r.destination, grpc.method, grpc.status, seconds);
  if (deps.accessLog) {
    deps.logger.info(
      {
        direction: 'outbound',
        correlationId: r.correlationId,
        source: deps.sourceLabel,
        destination: r.destination,
        method: r.method,
        path: r.path,
        status: r.status,
        code: r.code,
        attempts: r.attempts,
        grpcStatus: grpc?.status,
        ms: Math.round(seconds * 1000),
      },
      'http access',
    );
  }
}
