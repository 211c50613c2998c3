/**
 * The traffic-management resources: `TrafficRoute`, `RetryPolicy`, `TimeoutPolicy`, `OutlierDetection`,
 * `CircuitBreaker` and `ZoneFailover`. Like `TrafficPermission` they are plain, validated, frozen JSON data: parsed from
 * YAML files or read as Kubernetes custom resources, shipped in config snapshots as they are, and
 * validated again by whoever receives them (`validateTrafficObjects`) before `compileTraffic`.
 *
 * Each names one destination: a service of its own namespace, or `*` for every service of that
 * namespace. The resource naming the service beats the `*` one; with neither, the day-one defaults
 * below apply (Kuma's choice: a few retries where nothing reached an app, a short connect timeout,
 * a 15 s request timeout).
 */
import { POLICY_API_VERSION } from '../types.js';

export const TRAFFIC_API_VERSION = POLICY_API_VERSION;
export const TRAFFIC_KINDS = ['TrafficRoute', 'RetryPolicy', 'TimeoutPolicy', 'OutlierDetection', 'CircuitBreaker', 'ZoneFailover'] as const;
export type TrafficKind = (typeof TRAFFIC_KINDS)[number];

export interface TrafficMetadata {
  readonly name: string;
  readonly namespace: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

interface Resource<K extends TrafficKind, S> {
  readonly apiVersion: typeof TRAFFIC_API_VERSION;
  readonly kind: K;
  readonly metadata: TrafficMetadata;
  readonly spec: S & { readonly destination: string };
}

// ---- TrafficRoute ----

export type PathMatch = { readonly exact: string } | { readonly prefix: string };
/** A header condition: equal to a value, present at all, or matching a bounded regular expression. */
export type HeaderMatch =
  | { readonly name: string; readonly exact: string }
  | { readonly name: string; readonly present: true }
  | { readonly name: string; readonly regex: string };
export type QueryMatch = { readonly name: string; readonly exact: string } | { readonly name: string; readonly present: true };

/** Every condition present must hold; an absent `match` matches every request. */
export interface RouteMatch {
  readonly path?: PathMatch;
  readonly methods?: readonly string[];
  readonly headers?: readonly HeaderMatch[];
  readonly query?: readonly QueryMatch[];
}

/** Endpoints whose labels include all of `labels` (empty: every endpoint), with a relative weight. */
export interface RouteBackend {
  readonly labels: Readonly<Record<string, string>>;
  readonly weight: number;
}

export interface HeaderEdits {
  readonly set?: Readonly<Record<string, string>>;
  readonly remove?: readonly string[];
}

export interface RouteRule {
  readonly name?: string;
  readonly match?: RouteMatch;
  readonly backends: readonly RouteBackend[];
  readonly requestHeaders?: HeaderEdits;
  /** A copy of `percent`% of matching requests to endpoints with `labels`; its responses are discarded. */
  readonly mirror?: { readonly labels: Readonly<Record<string, string>>; readonly percent: number };
}

export type TrafficRoute = Resource<'TrafficRoute', { readonly rules: readonly RouteRule[] }>;

// ---- RetryPolicy ----

export const RETRY_CONDITIONS = ['connect-failure', 'reset', 'refused-stream', '5xx', 'gateway-error', 'retriable-status'] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

export interface RetryBudget {
  /** Retries may add at most this share of the requests of the window (0.2 = 20% extra load). */
  readonly ratio: number;
  /** And, whatever the ratio, this many retries per second (so a quiet caller can still retry). */
  readonly minPerSecond: number;
  /** The window requests are counted over. */
  readonly windowMs: number;
}

export interface RetrySpec {
  /** Attempts in all, the first included (1 = never retry). */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  readonly retryOn: readonly RetryCondition[];
  /** Statuses retried under `retriable-status`. */
  readonly statuses: readonly number[];
  /** gRPC status names (lower-case, e.g. `unavailable`) retried when a response carries them. */
  readonly grpcStatuses: readonly string[];
  readonly backoff: { readonly baseMs: number; readonly maxMs: number };
  /** Retry POST, PATCH and other non-idempotent methods too (default false). */
  readonly nonIdempotent: boolean;
  readonly budget: RetryBudget;
}

export type RetryPolicy = Resource<'RetryPolicy', RetrySpec>;

// ---- TimeoutPolicy ----

export interface TimeoutSpec {
  readonly connectMs: number;
  /** The whole exchange, retries included; not for streams and upgrades, which have `idleMs`. */
  readonly requestMs: number;
  readonly perTryMs?: number;
  readonly idleMs: number;
}

export type TimeoutPolicy = Resource<'TimeoutPolicy', TimeoutSpec>;

// ---- OutlierDetection ----

export interface OutlierSpec {
  readonly consecutive5xx?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly consecutiveConnectFailures?: number;
  /** Eject endpoints whose success rate is below mean − factor × stdev (needs `minimumHosts` with `requestVolume`). */
  readonly successRate?: { readonly minimumHosts: number; readonly requestVolume: number; readonly stdevFactor: number };
  readonly intervalMs: number;
  /** Ejection time is this times the number of times the endpoint was ejected, up to `maxEjectionTimeMs`. */
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  /** At most this share of a service's endpoints in one zone is ejected at once (at least one may always stay). */
  readonly maxEjectedPercent: number;
  /** Below this share of healthy endpoints, all endpoints are used (ejections are ignored). */
  readonly panicThresholdPercent: number;
}

export type OutlierDetection = Resource<'OutlierDetection', OutlierSpec>;

// ---- CircuitBreaker ----

export interface BreakerSpec {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
}

export type CircuitBreaker = Resource<'CircuitBreaker', BreakerSpec>;

// ---- ZoneFailover ----

/**
 * The order callers try zones in for a destination (failover-rules.ts has the semantics). Kept in the
 * form written (`threshold: "50%"`) so the validated resource validates again as it is shipped.
 */
export interface FailoverSpec {
  /** Zone names and `"*"` (every zone not named), each at most once. */
  readonly order: readonly string[];
  /** `"N%"`, 0-100: under this share of its usual endpoint count a zone spills to the next. */
  readonly threshold: string;
  /** The callers' zones the rule is for; absent: callers in every zone. */
  readonly from?: readonly string[];
}

export type ZoneFailover = Resource<'ZoneFailover', FailoverSpec>;

export type TrafficResource = TrafficRoute | RetryPolicy | TimeoutPolicy | OutlierDetection | CircuitBreaker | ZoneFailover;

// ---- day-one defaults ----

export const DEFAULT_RETRY: RetrySpec = Object.freeze({
  attempts: 3,
  retryOn: Object.freeze(['connect-failure', 'refused-stream'] as RetryCondition[]),
  statuses: Object.freeze([]),
  grpcStatuses: Object.freeze([]),
  backoff: Object.freeze({ baseMs: 25, maxMs: 250 }),
  nonIdempotent: false,
  budget: Object.freeze({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }),
});

export const DEFAULT_TIMEOUTS: TimeoutSpec = Object.freeze({ connectMs: 5_000, requestMs: 15_000, idleMs: 3_600_000 });

export const DEFAULT_OUTLIER: OutlierSpec = Object.freeze({
  consecutive5xx: 5,
  consecutiveGatewayErrors: 5,
  consecutiveConnectFailures: 3,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectedPercent: 50,
  panicThresholdPercent: 50,
});

/** Kuma's `failoverThreshold` default: a zone spills once under half its usual endpoint count is healthy. */
export const DEFAULT_FAILOVER_THRESHOLD = '50%';

export const DEFAULT_BREAKER: BreakerSpec = Object.freeze({ maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 });

/** The bounds every validator enforces; evaluation cost follows them. */
export const TRAFFIC_LIMITS = Object.freeze({
  rules: 64,
  backends: 16,
  headers: 16,
  query: 16,
  methods: 16,
  labels: 16,
  regexLength: 256,
  attempts: 10,
  statuses: 32,
  /** Zones in a ZoneFailover's `order` and `from`. */
  zones: 32,
});
