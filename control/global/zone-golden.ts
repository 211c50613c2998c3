/**
 * The global's memory of each zone's golden metrics: the edge view (caller → callee pairs over the zone's
 * last minutes, control/golden/golden-window.ts) that each zone posts to `POST /v1/zone/golden`, kept in
 * memory only, and merged across zones for the global's UI.
 *
 * A zone's report is untrusted input: it is validated whole before it replaces that zone's previous one
 * (bounded lists, labels, whole counts, failures and latency counts no more than requests, no unknown
 * field, no pair twice); it is stored under the zone its certificate names, never a name from the body,
 * and a body naming another zone is refused; so a zone can misreport its own traffic but never change
 * what another zone reported. Derived numbers (rate, success rate, quantiles) are recomputed here.
 */
import { LATENCY_SLOTS, SERVICE_LABEL, type EdgeDirection, type EdgeProtocol } from '../../api/golden-summary.js';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import { WINDOW_SLOT_MS, WINDOW_SLOTS, edgeView, mergeEdgeViews, type EdgeView } from '../golden/golden-window.js';
import { malformed } from '../zone-sync/protocol.js';
import { ZONE_GOLDEN_LIMITS } from '../zone-sync/golden-limits.js';

export interface ZoneGoldenReport {
  readonly zone: string;
  readonly windowMs: number;
  readonly truncated: number;
  readonly edges: readonly EdgeView[];
}

interface Held extends ZoneGoldenReport {
  readonly receivedAt: number;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(value: Json, allowed: readonly string[], what: string): void {
  for (const f of Object.keys(value)) if (!allowed.includes(f)) throw malformed(`golden: ${what} has an unknown field "${f}"`);
}

function count(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= ZONE_GOLDEN_LIMITS.maxCount;
}

function validateEdge(value: unknown, i: number, seconds: number): EdgeView {
  if (!isObject(value)) throw malformed(`golden: edge ${i} must be an object`);
  // Derived fields a zone's edge view carries are accepted and ignored: they are recomputed from the counts.
  only(value, ['source', 'destination', 'protocol', 'seenBy', 'requests', 'failures', 'denied', 'latency', 'ratePerSecond', 'successRate', 'p50Ms', 'p99Ms'], `edge ${i}`);
  const { source, destination, protocol, seenBy, requests, failures, denied, latency } = value;
  if (typeof source !== 'string' || typeof destination !== 'string' || !SERVICE_LABEL.test(source) || !SERVICE_LABEL.test(destination)) throw malformed(`golden: edge ${i}: source and destination must be namespace/service labels`);
  if (protocol !== 'http' && protocol !== 'tcp') throw malformed(`golden: edge ${i}: protocol must be http or tcp`);
  if (seenBy !== 'inbound' && seenBy !== 'outbound') throw malformed(`golden: edge ${i}: seenBy must be inbound or outbound`);
  if (!count(requests) || !count(failures) || !count(denied) || failures > requests) throw malformed(`golden: edge ${i}: requests, failures and denied must be whole numbers (failures ≤ requests)`);
  if (!Array.isArray(latency) || latency.length !== LATENCY_SLOTS || !latency.every(count)) throw malformed(`golden: edge ${i}: latency must be ${LATENCY_SLOTS} whole numbers`);
  const timed = (latency as number[]).reduce((a, b) => a + b, 0);
  if (timed > requests || (protocol === 'tcp' && timed > 0)) throw malformed(`golden: edge ${i}: latency counts exceed requests (or are on a TCP edge)`);
  return edgeView(source, destination, protocol as EdgeProtocol, { requests, failures, latency: Float64Array.from(latency as number[]) }, denied, seconds, seenBy as EdgeDirection);
}

/** Parses one zone's report; `zone` is the zone its certificate names. */
export function parseZoneGolden(zone: string, body: Json): ZoneGoldenReport {
  only(body, ['zone', 'windowMs', 'truncated', 'edges'], 'the report');
  if (body.zone !== zone) throw new TrellisError(CODE.ZONE_SYNC_FOREIGN_RECORD, `golden: zone "${zone}" sent a report for "${String(body.zone).slice(0, 64)}"`, { side: 'downstream' });
  const { windowMs, truncated, edges } = body;
  if (!count(windowMs) || windowMs < WINDOW_SLOT_MS || windowMs > WINDOW_SLOT_MS * WINDOW_SLOTS) throw malformed(`golden: windowMs must be ${WINDOW_SLOT_MS} to ${WINDOW_SLOT_MS * WINDOW_SLOTS}`);
  if (!count(truncated)) throw malformed('golden: truncated must be a whole number');
  if (!Array.isArray(edges)) throw malformed('golden: edges must be a list');
  if (edges.length > ZONE_GOLDEN_LIMITS.maxEdges) throw new TrellisError(CODE.ZONE_SYNC_TOO_LARGE, `golden: ${edges.length} edges, at most ${ZONE_GOLDEN_LIMITS.maxEdges}`, { side: 'downstream' });
  const seen = new Set<string>();
  const views = edges.map((e, i) => {
    const view = validateEdge(e, i, windowMs / 1000);
    const key = `${view.protocol} ${view.source} ${view.destination}`;
    if (seen.has(key)) throw malformed(`golden: edge ${i} repeats ${key}`);
    seen.add(key);
    return view;
  });
  return Object.freeze({ zone, windowMs, truncated, edges: Object.freeze(views) });
}

/** Whether a view counted traffic (not only denials). */
const counted = (v: EdgeView): boolean => v.requests > 0;

/**
 * Merges zones' views of the same pair. A call between zones is seen by both, the caller's zone outbound and
 * the callee's inbound: adding both would count it twice, so as within a zone the callee's (inbound) counts
 * are taken when any zone has them, else the callers'; denials (only the callee's zone hears them) add.
 */
export function mergeZoneEdges(views: readonly EdgeView[], seconds: number): EdgeView[] {
  const byPair = new Map<string, EdgeView[]>();
  for (const v of views) {
    const key = `${v.source} ${v.destination}`;
    const list = byPair.get(key);
    if (list === undefined) byPair.set(key, [v]);
    else list.push(v);
  }
  const out: EdgeView[] = [];
  for (const list of byPair.values()) {
    const seenBy: EdgeDirection = list.some((v) => v.seenBy === 'inbound' && counted(v)) ? 'inbound' : 'outbound';
    const protocol: EdgeProtocol = list.some((v) => v.protocol === 'http') ? 'http' : 'tcp';
    // Views of the other direction still carry their denials, with no counts.
    const parts = list.map((v) => (v.seenBy === seenBy ? v : edgeView(v.source, v.destination, v.protocol, undefined, v.denied, seconds)));
    const [merged] = mergeEdgeViews(parts.map((v) => ({ ...v, protocol })), seconds);
    if (merged !== undefined) out.push({ ...merged, seenBy });
  }
  return out.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
}

export class ZoneGoldenBoard {
  private readonly reports = new Map<string, Held>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Validates and keeps `zone`'s report, replacing its last one; refuses it whole otherwise. */
  accept(zone: string, body: Json): ZoneGoldenReport {
    const at = this.now();
    const last = this.reports.get(zone);
    if (last !== undefined && at - last.receivedAt < ZONE_GOLDEN_LIMITS.minIntervalMs) {
      throw new TrellisError(CODE.ZONE_GOLDEN_TOO_FREQUENT, `golden: zone "${zone}" reported ${at - last.receivedAt} ms ago; at most one report per ${ZONE_GOLDEN_LIMITS.minIntervalMs} ms`, { side: 'downstream', retryable: true });
    }
    const report = parseZoneGolden(zone, body);
    if (last === undefined && this.reports.size >= ZONE_GOLDEN_LIMITS.maxZones) this.forgetOldest();
    this.reports.set(zone, { ...report, receivedAt: at });
    return report;
  }

  /** Per zone: when its last report came, how many pairs it held and how many it left out. */
  zones(): { zone: string; receivedAt: string; ageMs: number; edges: number; truncated: number; current: boolean }[] {
    const at = this.now();
    return [...this.reports.values()].map((r) => ({ zone: r.zone, receivedAt: new Date(r.receivedAt).toISOString(), ageMs: at - r.receivedAt, edges: r.edges.length, truncated: r.truncated, current: at - r.receivedAt <= ZONE_GOLDEN_LIMITS.maxAgeMs }));
  }

  /** The merged graph of every zone whose report is current, with the zones each pair was heard from. */
  edges(): { windowMs: number; edges: (EdgeView & { zones: string[] })[] } {
    const at = this.now();
    const current = [...this.reports.values()].filter((r) => at - r.receivedAt <= ZONE_GOLDEN_LIMITS.maxAgeMs);
    const windowMs = Math.max(WINDOW_SLOT_MS, ...current.map((r) => r.windowMs));
    const zonesOf = new Map<string, Set<string>>();
    for (const r of current) for (const e of r.edges) {
      const key = `${e.source} ${e.destination}`;
      (zonesOf.get(key) ?? zonesOf.set(key, new Set()).get(key))?.add(r.zone);
    }
    const merged = mergeZoneEdges(current.flatMap((r) => r.edges), windowMs / 1000);
    return { windowMs, edges: merged.map((e) => ({ ...e, zones: [...(zonesOf.get(`${e.source} ${e.destination}`) ?? [])].sort() })) };
  }

  private forgetOldest(): void {
    let oldest: Held | undefined;
    for (const r of this.reports.values()) if (oldest === undefined || r.receivedAt < oldest.receivedAt) oldest = r;
    if (oldest !== undefined) this.reports.delete(oldest.zone);
  }
}
