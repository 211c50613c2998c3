/**
 * One measured run of a load generator, in the same shape whichever tool produced it, plus the small
 * statistics the report needs (exact percentiles of raw samples, medians across rounds).
 */

export interface LatencySummary {
  /** Microseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly mean: number;
  readonly max: number;
}

export interface ErrorCounts {
  /** Connections that could not be opened. */
  readonly connect: number;
  /** Reads that failed or connections closed before a whole response (resets, truncation). */
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
  /** Anything else the tool counted as failed (h2load's "errored"/"failed" beyond the above). */
  readonly other: number;
}

export interface LoadSample {
  readonly tool: 'wrk' | 'h2load' | 'grpc-js';
  /** The exact command line, so a surprising figure can be reproduced by hand. */
  readonly command: readonly string[];
  readonly seconds: number;
  /** Complete responses received. */
  readonly requests: number;
  /** Bytes received, headers included. */
  readonly bytes: number;
  readonly requestsPerSecond: number;
  /** Mebibytes (2^20 bytes) received per second. */
  readonly mebibytesPerSecond: number;
  readonly latencyUs: LatencySummary;
  readonly errors: ErrorCounts;
  /** Responses whose status was not 2xx (wrk counts 3xx as success; our backend never sends one). */
  readonly non2xx: number;
  /** What the tool said about its failures (the gRPC load generator: failed calls by status), shown as warnings. */
  readonly notes?: readonly string[];
}

export function totalErrors(errors: ErrorCounts): number {
  return errors.connect + errors.read + errors.write + errors.timeout + errors.other;
}

/** Nearest-rank percentile of values sorted ascending (p in 0..100). */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  // The epsilon keeps floating point from pushing an exact rank (99.9% of 1000 = 999) up by one.
  const rank = Math.ceil((p * sorted.length) / 100 - 1e-9);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

/** Median of any numbers (mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? (finite[mid] as number) : ((finite[mid - 1] as number) + (finite[mid] as number)) / 2;
}

export const MIB = 1024 * 1024;
