/**
 * The sidecar's own counters (HTTP requests and their latency histogram, TCP connections, policy denials)
 * read as golden-metrics samples: the change between two readings of its Registry, per caller → callee
 * pair. The agent sends them (agent/golden-reporter.ts); nothing here touches the data path: the counters
 * exist for /metrics already and are read once per summary.
 */
import type { Registry } from 'prom-client';
import { LATENCY_BOUNDS_MS, LATENCY_SLOTS, type DenialSample, type EdgeSample } from '../api/golden-summary.js';

type Values = readonly { readonly labels: Readonly<Record<string, string | number>>; readonly value: number; readonly metricName?: string }[];

/** Cumulative counters by series key, as read at one moment. */
export type Reading = Map<string, number>;

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

