/**
 * Metrics of the HTTP path: requests by source, destination and status class, and a latency histogram,
 * registered on the Registry the caller passes in. Denials use the shared `trellis_policy_denials_total`
 * of `metrics.ts`, so TCP and HTTP denials are counted in one place.
 *
 * prom-client hashes a label object on every call; the children for one (direction, source, destination)
 * are looked up once and cached, so recording a request costs one Map lookup and two increments.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Direction } from '../core/metrics.js';
import { createGrpcMetrics } from './grpc-metrics.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** Seconds; from sub-millisecond loopback hops to slow uploads. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Past this many (direction, source, destination) triples the cache stops growing (labels still work). */
const MAX_CACHED_ROUTES = 4_096;

interface RouteChildren {
  readonly byClass: readonly { inc(): void }[];
  readonly latency: { observe(value: number): void };
}

export interface HttpMetrics {
  /** One finished request (or one that failed with a status the caller saw). */
  record(direction: Direction, source: string, destination: string, status: number, seconds: number): void;
  /** One finished gRPC call (recorded besides `record`): its status code and method (http/grpc-metrics.ts). */
  recordGrpc?(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void;
}

export function createHttpMetrics(registry: Registry): HttpMetrics {
  const registers = [registry];
  const requests = new Counter({
    name: 'trellis_http_requests_total',
    help: 'HTTP requests carried through the mesh, by direction, source and destination service, and status class.',
    labelNames: ['direction', 'source', 'destination', 'status_class'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'trellis_http_request_duration_seconds',
    help: 'Time from the request head to the end of the response, as seen by this sidecar.',
    labelNames: ['direction', 'source', 'destination'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const cache = new Map<string, RouteChildren>();

  function children(direction: Direction, source: string, destination: string): RouteChildren {
    const key = `${direction} ${source} ${destination}`;
    let entry = cache.get(key);
    if (entry === undefined) {
      entry = {
        byClass: STATUS_CLASSES.map((statusClass) => requests.labels(direction, source, destination, statusClass)),
        latency: latency.labels(direction, source, destination),
      };
      if (cache.size < MAX_CACHED_ROUTES) cache.set(key, entry);
    }
    return entry;
  }

  const grpc = createGrpcMetrics(registry);
  return Object.freeze({
    recordGrpc: grpc.record,
    record(direction: Direction, source: string, destination: string, status: number, seconds: number): void {
      const route = children(direction, source, destination);
      const index = Math.min(4, Math.max(0, Math.floor(status / 100) - 1));
      (route.byClass[index] as { inc(): void }).inc();
      route.latency.observe(seconds);
    },
  });
}
