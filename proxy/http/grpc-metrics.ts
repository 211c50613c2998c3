/**
 * gRPC calls by status and method: `trellis_grpc_requests_total{direction,source,destination,method,grpc_status}`
 * and `trellis_grpc_request_duration_seconds{direction,source,destination,method}`.
 *
 * The method label is bounded: the first `MAX_METHODS` distinct methods keep their name, later ones are
 * counted as `other` (a caller can name any method, and every name would otherwise be a new series); the
 * status label is the gRPC code, 0-16, or `other` for anything else a peer sent.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Direction } from '../core/metrics.js';

const MAX_METHODS = 512;
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface GrpcMetrics {
  record(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void;
}

export function createGrpcMetrics(registry: Registry): GrpcMetrics {
  const registers = [registry];
  const calls = new Counter({
    name: 'trellis_grpc_requests_total',
    help: 'gRPC calls carried through the mesh, by direction, source and destination service, method and gRPC status code.',
    labelNames: ['direction', 'source', 'destination', 'method', 'grpc_status'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'trellis_grpc_request_duration_seconds',
    help: 'Time from the call start to its status, as seen by this sidecar, per method.',
    labelNames: ['direction', 'source', 'destination', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const methods = new Set<string>();
  return Object.freeze({
    record(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void {
      let label = method;
      if (!methods.has(method)) {
        if (methods.size < MAX_METHODS) methods.add(method);
        else label = 'other';
      }
      const status = /^(?:[0-9]|1[0-6])$/.test(grpcStatus) ? grpcStatus : 'other';
      calls.labels(direction, source, destination, label, status).inc();
      latency.labels(direction, source, destination, label).observe(seconds);
    },
  });
}
