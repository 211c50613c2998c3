/**
 * Golden metrics without a Prometheus server: the small summary each agent posts to its zone control plane
 * every `DEFAULT_SUMMARY_INTERVAL_MS` (requests, failures and a latency histogram per caller → callee pair,
 * policy denials with the deciding rule, its certificate's expiry, the config it runs), over the same mTLS
 * identity as its watch. The control plane treats it as untrusted input (control/golden/validate-summary.ts):
 * an agent reports only for its own identity, and a summary over these bounds is refused whole.
 *
 * The latency "sketch" is a histogram over fixed bounds: it merges by addition across agents, intervals and
 * zones, costs 16 numbers per edge, and gives p50/p99 within one bucket's width (`quantileMs`).
 */

/** `POST` with a `GoldenSummary` body; mutual TLS with the workload certificate (the watch's). */
export const SUMMARY_PATH = '/v1/summary';

export const DEFAULT_SUMMARY_INTERVAL_MS = 10_000;

/** Upper bounds (ms) of the latency buckets; one more slot counts everything slower than the last. */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000]);
export const LATENCY_SLOTS = LATENCY_BOUNDS_MS.length + 1;

/** What one summary may hold; the control plane refuses anything larger (`TRELLIS_CONTROL_SUMMARY_*`). */
export const SUMMARY_LIMITS = Object.freeze({
  /** Bytes of the JSON body (a full summary of `maxEdges` edges and `maxDenials` denials is about 20 KiB). */
  maxBytes: 32 * 1024,
  maxEdges: 64,
  maxDenials: 32,
  /** Largest count in one summary: a sidecar does not carry a billion requests in ten seconds. */
  maxCount: 1_000_000_000,
  /** Summaries from one instance closer than this are refused (an agent sends one per interval). */
  minIntervalMs: 2_000,
  maxLabelLength: 253,
});

/** `namespace/service` as the proxy labels them (DNS-label-like parts), or `unknown`; other labels are not sent. */
export const SERVICE_LABEL = /^(?:unknown|[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?)$/;
/** `namespace/name` of a policy, or `default-deny`. */
export const POLICY_LABEL = /^(?:default-deny|[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$/;

export type EdgeDirection = 'inbound' | 'outbound';
export type EdgeProtocol = 'http' | 'tcp';

/** Traffic of one caller → callee pair seen by one sidecar since its last summary. */
export interface EdgeSample {
  /** `inbound`: this agent is the callee (the caller is the verified peer); `outbound`: it is the caller. */
  readonly direction: EdgeDirection;
  /** `namespace/service` (`unknown` for an unauthenticated caller). */
  readonly source: string;
  readonly destination: string;
  readonly protocol: EdgeProtocol;
  /** HTTP requests, or TCP connections. */
  readonly requests: number;
  /** HTTP 5xx, or TCP connections that did not end `ok`. */
  readonly failures: number;
  /** Per `LATENCY_BOUNDS_MS` slot (HTTP only): `LATENCY_SLOTS` counts. */
  readonly latency?: readonly number[];
}

/** Requests or streams one policy rule denied (inbound, at this agent) since the last summary. */
export interface DenialSample {
  readonly source: string;
  readonly destination: string;
  /** `namespace/name` of the deciding policy, or `default-deny`. */
  readonly policy: string;
  /** Rule index within the policy, `''` when none. */
  readonly rule: string;
  /** False: a dry-run rule that would have denied (the request went through). */
  readonly enforced: boolean;
  readonly count: number;
}

export interface GoldenSummary {
  /** The instance of the agent's watch registration. */
  readonly instanceId: string;
  /** Milliseconds this summary covers (time since the last one accepted). */
  readonly intervalMs: number;
  /** Version of the config in force (null before the first). */
  readonly configVersion: number | null;
  /** `sha256:<hex>` of the policy set in force (null before the first config). */
  readonly policyRevision: string | null;
  /** True while the agent serves a config it knows may be out of date. */
  readonly configStale: boolean;
  /** ISO-8601 expiry of the workload certificate in use. */
  readonly certNotAfter: string | null;
  readonly edges: readonly EdgeSample[];
  readonly denials: readonly DenialSample[];
  /** Edges and denials the agent left out to stay under the limits (the largest are kept). */
  readonly truncated: number;
}

/** The `q` quantile (0..1) of a latency histogram in ms, interpolated inside its bucket; null when empty. */
export function quantileMs(counts: ArrayLike<number>, q: number): number | null {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i] as number;
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i] as number;
    if (n > 0 && seen + n >= rank) {
      const lower = i === 0 ? 0 : (LATENCY_BOUNDS_MS[i - 1] as number);
      // The overflow slot has no upper bound: say its lower one (a floor, not a guess).
      if (i >= LATENCY_BOUNDS_MS.length) return lower;
      const upper = LATENCY_BOUNDS_MS[i] as number;
      return lower + ((upper - lower) * (rank - seen)) / n;
    }
    seen += n;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] as number;
}
