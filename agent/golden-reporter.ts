/**
 * The agent's half of golden metrics: every `DEFAULT_SUMMARY_INTERVAL_MS` while the watch is connected, the
 * change since the last accepted summary of the sidecar's own counters (HTTP requests and their latency
 * histogram, TCP connections, policy denials) is posted to the control plane as a `GoldenSummary`, with
 * the certificate's expiry and the config in force. Nothing is added to the data path: the counters exist
 * for /metrics already, and are read here once per interval. A summary that is not accepted leaves the
 * baseline where it was, so the next one carries both intervals. A control plane that does not know the
 * path (404: older than summaries) is not asked again until the agent restarts.
 */
import type { Registry } from 'prom-client';
import { ControlError } from '../api/control-client.js';
import { LATENCY_BOUNDS_MS, LATENCY_SLOTS, POLICY_LABEL, SERVICE_LABEL, SUMMARY_LIMITS, type DenialSample, type EdgeSample, type GoldenSummary } from '../api/golden-summary.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';

export interface GoldenReporterOptions {
  readonly registry: Registry;
  readonly instanceId: string;
  readonly intervalMs: number;
  /** Whether the watch is connected now (summaries go only then). */
  readonly connected: () => boolean;
  readonly config: () => { readonly version: number | null; readonly policyRevision: string | null; readonly stale: boolean };
  readonly certNotAfter: () => Date | undefined;
  /** Posts one summary; rejects with a ControlError on a refusal. */
  readonly send: (summary: GoldenSummary) => Promise<void>;
  readonly log: Logger;
  readonly now?: () => number;
}

type Values = readonly { readonly labels: Readonly<Record<string, string | number>>; readonly value: number; readonly metricName?: string }[];

/** Cumulative counters by series key, as read at one moment. */
type Reading = Map<string, number>;

const HTTP_REQUESTS = 'trellis_http_requests_total';
const HTTP_LATENCY = 'trellis_http_request_duration_seconds';
const TCP_CONNECTIONS = 'trellis_tcp_connections_total';
const DENIALS = 'trellis_policy_denials_total';

async function valuesOf(registry: Registry, name: string): Promise<Values> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return [];
  return ((await metric.get()) as { values: Values }).values;
}

/** The latency slot an `le` bound (seconds) falls in: the first bound of ours at or above it. */
function slotOfLe(le: string | number): number {
  if (le === '+Inf') return LATENCY_SLOTS - 1;
  const ms = Number(le) * 1000;
  const i = LATENCY_BOUNDS_MS.findIndex((b) => b >= ms - 1e-9);
  return i === -1 ? LATENCY_SLOTS - 1 : i;
}

/** Reads every counter of interest into one flat map of series → cumulative value. */
export async function readCounters(registry: Registry): Promise<Reading> {
  const reading: Reading = new Map();
  const add = (key: string, v: number): void => void reading.set(key, (reading.get(key) ?? 0) + v);
  for (const v of await valuesOf(registry, HTTP_REQUESTS)) {
    const edge = `${String(v.labels.direction)} http ${String(v.labels.source)} ${String(v.labels.destination)}`;
    add(`r ${edge}`, v.value);
    if (v.labels.status_class === '5xx') add(`f ${edge}`, v.value);
  }
  for (const v of await valuesOf(registry, HTTP_LATENCY)) {
    if (v.metricName !== `${HTTP_LATENCY}_bucket` || v.labels.le === undefined) continue;
    // Cumulative buckets: kept as read; `diff` turns them into per-slot counts.
    reading.set(`l ${String(v.labels.direction)} http ${String(v.labels.source)} ${String(v.labels.destination)} ${String(v.labels.le)}`, v.value);
  }
  for (const v of await valuesOf(registry, TCP_CONNECTIONS)) {
    const edge = `${String(v.labels.direction)} tcp ${String(v.labels.source)} ${String(v.labels.destination)}`;
    add(`r ${edge}`, v.value);
    if (v.labels.result !== 'ok') add(`f ${edge}`, v.value);
  }
  for (const v of await valuesOf(registry, DENIALS)) {
    add(`d ${String(v.labels.source)} ${String(v.labels.destination)} ${String(v.labels.policy)} ${String(v.labels.rule)} ${String(v.labels.enforced)}`, v.value);
  }
  return reading;
}

/** Edges and denials between two readings; a counter that went down (a restart) counts from zero. */
export function diff(before: Reading, after: Reading): { edges: EdgeSample[]; denials: DenialSample[] } {
  const delta = (key: string): number => {
    const a = after.get(key) ?? 0;
    const b = before.get(key) ?? 0;
    return Math.round(a >= b ? a - b : a);
  };
  const edges = new Map<string, { direction: 'inbound' | 'outbound'; protocol: 'http' | 'tcp'; source: string; destination: string; requests: number; failures: number; cumulative: Map<number, number> }>();
  const denials: DenialSample[] = [];
  for (const key of after.keys()) {
    const [kind, ...rest] = key.split(' ');
    if (kind === 'd') {
      const n = delta(key);
      const [source, destination, policy, rule, enforced] = rest as [string, string, string, string, string];
      if (n > 0) denials.push({ source, destination, policy, rule, enforced: enforced === 'true', count: n });
      continue;
    }
    const [direction, protocol, source, destination, le] = rest as ['inbound' | 'outbound', 'http' | 'tcp', string, string, string | undefined];
    const edgeKey = `${direction} ${protocol} ${source} ${destination}`;
    let edge = edges.get(edgeKey);
    if (edge === undefined) edges.set(edgeKey, (edge = { direction, protocol, source, destination, requests: 0, failures: 0, cumulative: new Map() }));
    if (kind === 'r') edge.requests += delta(key);
    else if (kind === 'f') edge.failures += delta(key);
    else if (kind === 'l' && le !== undefined) {
      const slot = slotOfLe(le);
      // Several `le` may land in one slot of ours: the largest cumulative count is that slot's.
      edge.cumulative.set(slot, Math.max(edge.cumulative.get(slot) ?? 0, delta(key)));
    }
  }
  const samples: EdgeSample[] = [];
  for (const e of edges.values()) {
    if (e.requests === 0) continue;
    const sample: EdgeSample = { direction: e.direction, source: e.source, destination: e.destination, protocol: e.protocol, requests: e.requests, failures: Math.min(e.failures, e.requests) };
    samples.push(e.cumulative.size === 0 ? sample : { ...sample, latency: perSlot(e.cumulative, e.requests) });
  }
  return { edges: samples, denials };
}

/** Cumulative counts per slot into per-slot counts, never more in total than the edge's requests. */
function perSlot(cumulative: ReadonlyMap<number, number>, requests: number): number[] {
  const counts = new Array<number>(LATENCY_SLOTS).fill(0);
  let previous = 0;
  for (let i = 0; i < LATENCY_SLOTS; i++) {
    const c = Math.min(requests, Math.max(previous, cumulative.get(i) ?? previous));
    counts[i] = c - previous;
    previous = c;
  }
  return counts;
}

export class GoldenReporter {
  private baseline: Reading = new Map();
  private baselineAt: number;
  private timer: NodeJS.Timeout | undefined;
  private disabled = false;
  private sending = false;
  private readonly now: () => number;

  constructor(private readonly options: GoldenReporterOptions) {
    this.now = options.now ?? Date.now;
    this.baselineAt = this.now();
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Builds the summary since the baseline (exported for tests and the benchmark). */
  async build(): Promise<{ summary: GoldenSummary; reading: Reading }> {
    const reading = await readCounters(this.options.registry);
    const all = diff(this.baseline, reading);
    // Pairs the control plane would refuse (an explicit listener's `local` caller, a label of another shape)
    // are left out rather than costing the whole summary.
    const edges = all.edges.filter((e) => SERVICE_LABEL.test(e.source) && SERVICE_LABEL.test(e.destination));
    const denials = all.denials.filter((d) => SERVICE_LABEL.test(d.source) && SERVICE_LABEL.test(d.destination) && POLICY_LABEL.test(d.policy));
    // The largest first, so what is cut to stay under the limits is the least.
    edges.sort((a, b) => b.requests - a.requests);
    denials.sort((a, b) => b.count - a.count);
    const keptEdges = edges.slice(0, SUMMARY_LIMITS.maxEdges);
    const keptDenials = denials.slice(0, SUMMARY_LIMITS.maxDenials);
    const config = this.options.config();
    const summary: GoldenSummary = {
      instanceId: this.options.instanceId,
      intervalMs: Math.max(0, Math.round(this.now() - this.baselineAt)),
      configVersion: config.version,
      policyRevision: config.policyRevision,
      configStale: config.stale,
      certNotAfter: this.options.certNotAfter()?.toISOString() ?? null,
      edges: keptEdges,
      denials: keptDenials,
      truncated: all.edges.length - keptEdges.length + all.denials.length - keptDenials.length,
    };
    return { summary, reading };
  }

  async tick(): Promise<void> {
    if (this.disabled || this.sending || !this.options.connected()) return;
    this.sending = true;
    try {
      const { summary, reading } = await this.build();
      await this.options.send(summary);
      this.baseline = reading;
      this.baselineAt = this.now();
    } catch (err) {
      if (err instanceof ControlError && err.status === 404) {
        this.disabled = true;
        this.options.log.info('the control plane takes no golden-metrics summaries (older than them); not sending any');
      } else {
        this.options.log.debug({ err: describeError(err) }, 'golden-metrics summary not accepted; the next one carries this interval too');
      }
    } finally {
      this.sending = false;
    }
  }
}
