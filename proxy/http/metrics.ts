/**
 * Metrics of the HTTP path: requests by source, destination and status class, and a latency histogram,
 * registered on the Registry the caller passes in. Denials use the shared `trellis_policy_denials_total`
 * of `metrics.ts`, so TCP and HTTP denials are counted in one place.
 *
 * prom-client hashes, validates and copies a label object on every call, even through a cached child
 * (`labels(...).inc()`): about 1–2 µs per request at each sidecar. So a request is counted in plain
 * arrays kept per (direction, source, destination), looked up once and cached: the status classes are
 * handed to prom-client's counter in bulk when it is collected (a scrape), and the latency histogram is
 * our own series (http/route-histogram.ts). Recording a request costs one Map lookup and a few additions.
 */
import { Counter, type Registry } from 'prom-client';
import type { Direction } from '../core/metrics.js';
import { RouteHistogram, type HistogramSeries } from './route-histogram.js';
import { createGrpcMetrics } from './grpc-metrics.js';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** Seconds; from sub-millisecond loopback hops to slow uploads. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Past this many (direction, source, destination) triples the cache stops growing (labels still work). */
const MAX_CACHED_ROUTES = 4_096;

interface RouteChildren {
  readonly labels: Readonly<Record<'direction' | 'source' | 'destination', string>>;
  /** Requests per status class not yet handed to the counter. */
  readonly pending: Float64Array;
  readonly latency: HistogramSeries;
  /** In the cache, so `collect` sees it; else its counts are handed over at once. */
  readonly cached: boolean;
}

export interface HttpMetrics {
  /** One finished request (or one that failed with a status the caller saw). */
  record(direction: Direction, source: string, destination: string, status: number, seconds: number): void;
  /** One finished gRPC call (recorded besides `record`): its status code and method (http/grpc-metrics.ts). */
  recordGrpc?(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void;
}

export function createHttpMetrics(registry: Registry): HttpMetrics {
  const cache = new Map<string, RouteChildren>();
  const requests = new Counter({
    name: 'trellis_http_requests_total',
    help: 'HTTP requests carried through the mesh, by direction, source and destination service, and status class.',
    labelNames: ['direction', 'source', 'destination', 'status_class'] as const,
    registers: [registry],
    collect: () => {
      for (const route of cache.values()) flush(route);
    },
  });
  const latency = new RouteHistogram(
    'trellis_http_request_duration_seconds',
    'Time from the request head to the end of the response, as seen by this sidecar.',
    LATENCY_BUCKETS,
    registry,
  );

  function flush(route: RouteChildren): void {
    const pending = route.pending;
    for (let i = 0; i < STATUS_CLASSES.length; i++) {
      const n = pending[i] as number;
      if (n === 0) continue;
      pending[i] = 0;
      requests.inc({ ...route.labels, status_class: STATUS_CLASSES[i] as string }, n);
    }
  }

  function children(direction: Direction, source: string, destination: string): RouteChildren {
    const key = `${direction} ${source} ${destination}`;
    let entry = cache.get(key);
    if (entry === undefined) {
      const labels = Object.freeze({ direction, source, destination });
      const cached = cache.size < MAX_CACHED_ROUTES;
      entry = { labels, pending: new Float64Array(STATUS_CLASSES.length), latency: latency.labels(key, labels), cached };
      if (cached) cache.set(key, entry);
    }
    return entry;
  }

  const grpc = createGrpcMetrics(registry);
  return Object.freeze({
    recordGrpc: grpc.record,
    record(direction: Direction, source: string, destination: string, status: number, seconds: number): void {
      const route = children(direction, source, destination);
      const index = Math.min(4, Math.max(0, Math.floor(status / 100) - 1));
      route.pending[index] = (route.pending[index] as number) + 1;
      // A route past the cache's bound is not seen by `collect`: its entry is handed over at once.
      if (!route.cached) flush(route);
      route.latency.observe(seconds);
    },
  });
}
