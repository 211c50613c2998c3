/**
 * gRPC calls by status and method: `trellis_grpc_requests_total{direction,source,destination,method,grpc_status}`
 * and `trellis_grpc_request_duration_seconds{direction,source,destination,method}`.
 *
 * The method label is bounded: the first `MAX_METHODS` distinct methods keep their name, later ones are
 * counted as `other` (a caller can name any method, and every name would otherwise be a new series); the
 * status label is the gRPC code, 0-16, or `other` for anything else a peer sent.
 *
 * Recorded as the HTTP metrics are (metrics.ts): a series is looked up once and cached, calls are counted in
 * plain numbers handed to prom-client's counter when it is collected, and the latency histogram is our own
 * (route-histogram.ts). prom-client's `labels(...)` children hash and validate their labels on every call:
 * the two lookups per call were ~1.6 % of an inbound sidecar's CPU on the gRPC benchmark.
 */
import { Counter, type Registry } from 'prom-client';
import type { Direction } from '../core/metrics.js';
import { RouteHistogram, type HistogramSeries } from './route-histogram.js';

const MAX_METHODS = 512;
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Past this many series the cache stops growing (such calls are handed to the counter at once). */
const MAX_CACHED_SERIES = 8_192;
/** The gRPC status codes, 0-16, as label values. */
const GRPC_CODES: ReadonlySet<string> = new Set(Array.from({ length: 17 }, (_, i) => String(i)));

export interface GrpcMetrics {
  record(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void;
}

interface Series {
  readonly labels: Readonly<Record<'direction' | 'source' | 'destination' | 'method' | 'grpc_status', string>>;
  /** Calls not yet handed to the counter. */
  pending: number;
  readonly latency: HistogramSeries;
  /** In the cache, so `collect` sees it; else its calls are handed over at once. */
  readonly cached: boolean;
}

export function createGrpcMetrics(registry: Registry): GrpcMetrics {
  const cache = new Map<string, Series>();
  const flush = (series: Series): void => {
    if (series.pending === 0) return;
    calls.inc(series.labels, series.pending);
    series.pending = 0;
  };
  const calls = new Counter({
    name: 'trellis_grpc_requests_total',
    help: 'gRPC calls carried through the mesh, by direction, source and destination service, method and gRPC status code.',
    labelNames: ['direction', 'source', 'destination', 'method', 'grpc_status'] as const,
    registers: [registry],
    collect: () => {
      for (const series of cache.values()) flush(series);
    },
  });
  const latency = new RouteHistogram('trellis_grpc_request_duration_seconds', 'Time from the call start to its status, as seen by this sidecar, per method.', LATENCY_BUCKETS, registry);
  const lookup = (direction: Direction, source: string, destination: string, method: string, status: string): Series => {
    const key = `${direction} ${source} ${destination} ${method} ${status}`;
    let series = cache.get(key);
    if (series === undefined) {
      const cached = cache.size < MAX_CACHED_SERIES;
      series = {
        labels: Object.freeze({ direction, source, destination, method, grpc_status: status }),
        pending: 0,
        latency: latency.labels(`${direction} ${source} ${destination} ${method}`, Object.freeze({ direction, source, destination, method })),
        cached,
      };
      if (cached) cache.set(key, series);
    }
    return series;
  };
  const methods = new Set<string>();
  return Object.freeze({
    record(direction: Direction, source: string, destination: string, method: string, grpcStatus: string, seconds: number): void {
      let label = method;
      if (!methods.has(method)) {
        if (methods.size < MAX_METHODS) methods.add(method);
        else label = 'other';
      }
      const series = lookup(direction, source, destination, label, GRPC_CODES.has(grpcStatus) ? grpcStatus : 'other');
      series.pending += 1;
      if (!series.cached) flush(series);
      series.latency.observe(seconds);
    },
  });
}
