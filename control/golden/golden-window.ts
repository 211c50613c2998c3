/**
 * The zone control plane's memory of its agents' golden-metrics summaries: the last 15 minutes in one-minute
 * slots (a ring, so old minutes fall off without a sweep), the most recent denials, and the last report of
 * each agent (config version and staleness, certificate expiry). Every structure is bounded: at most
 * `maxEdgesPerSlot` pairs per minute and `maxAgents` agents; what does not fit is counted in `dropped`, never
 * stored. Nothing is persisted: a restarted control plane starts empty and refills within a minute.
 */
import { LATENCY_SLOTS, quantileMs, type DenialSample, type EdgeDirection, type EdgeProtocol, type GoldenSummary } from '../../api/golden-summary.js';

export const WINDOW_SLOT_MS = 60_000;
export const WINDOW_SLOTS = 15;
export const WINDOW_LIMITS = Object.freeze({ maxEdgesPerSlot: 20_000, maxDenialsPerSlot: 5_000, maxAgents: 100_000, recentDenials: 200 });

/** One pair's counts within one minute and one direction: mergeable by addition. */
export interface EdgeCounts {
  requests: number;
  failures: number;
  readonly latency: Float64Array;
}

interface EdgeEntry extends EdgeCounts {
  readonly direction: EdgeDirection;
  readonly source: string;
  readonly destination: string;
  readonly protocol: EdgeProtocol;
}

interface DenialEntry {
  readonly source: string;
  readonly destination: string;
  readonly policy: string;
  readonly rule: string;
  readonly enforced: boolean;
  count: number;
}

interface Slot {
  minute: number;
  readonly edges: Map<string, EdgeEntry>;
  readonly denials: Map<string, DenialEntry>;
}

export interface AgentReport {
  readonly instanceId: string;
  readonly service: string;
  readonly namespace: string;
  readonly zone: string;
  readonly configVersion: number | null;
  readonly policyRevision: string | null;
  readonly configStale: boolean;
  readonly certNotAfter: string | null;
  readonly receivedAt: number;
}

/** One summary's denial of one rule, with when and where it was heard. */
export interface RecentDenial extends DenialSample {
  readonly at: string;
  readonly zone: string;
}

/** One caller → callee pair over a window, as the UI and the global read it. */
export interface EdgeView {
  readonly source: string;
  readonly destination: string;
  readonly protocol: EdgeProtocol;
  /** Whose counts these are: the callee's (inbound) when it reported any, else the caller's. */
  readonly seenBy: EdgeDirection;
  readonly requests: number;
  readonly failures: number;
  readonly ratePerSecond: number;
  /** null when no requests. */
  readonly successRate: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Enforced denials of this pair in the window. */
  readonly denied: number;
  /** Summed latency counts, for merging across zones. */
  readonly latency: readonly number[];
}

export class GoldenWindow {
  private readonly slots: Slot[] = Array.from({ length: WINDOW_SLOTS }, () => ({ minute: -1, edges: new Map(), denials: new Map() }));
  private readonly agents = new Map<string, AgentReport>();
  private readonly recent: RecentDenial[] = [];
  /** Samples refused for lack of room (pairs or agents past the bounds). */
  dropped = 0;

  constructor(private readonly zone: string, private readonly now: () => number = Date.now) {}

  /** Adds one validated summary from `instanceId` of `namespace/service`. */
  add(summary: GoldenSummary, who: { readonly service: string; readonly namespace: string }): void {
    const at = this.now();
    const slot = this.slotAt(at);
    for (const e of summary.edges) {
      const key = `${e.direction} ${e.protocol} ${e.source} ${e.destination}`;
      let entry = slot.edges.get(key);
      if (entry === undefined) {
        if (slot.edges.size >= WINDOW_LIMITS.maxEdgesPerSlot) {
          this.dropped++;
          continue;
        }
        entry = { direction: e.direction, protocol: e.protocol, source: e.source, destination: e.destination, requests: 0, failures: 0, latency: new Float64Array(LATENCY_SLOTS) };
        slot.edges.set(key, entry);
      }
      entry.requests += e.requests;
      entry.failures += e.failures;
      if (e.latency !== undefined) for (let i = 0; i < LATENCY_SLOTS; i++) (entry.latency[i] as number) += e.latency[i] as number;
    }
    for (const d of summary.denials) {
      const key = `${d.source} ${d.destination} ${d.policy} ${d.rule} ${d.enforced}`;
      let entry = slot.denials.get(key);
      if (entry === undefined) {
        if (slot.denials.size >= WINDOW_LIMITS.maxDenialsPerSlot) {
          this.dropped++;
          continue;
        }
        slot.denials.set(key, (entry = { ...d, count: 0 }));
      }
      entry.count += d.count;
      if (d.count > 0) this.remember({ at: new Date(at).toISOString(), zone: this.zone, ...d });
    }
    if (!this.agents.has(summary.instanceId) && this.agents.size >= WINDOW_LIMITS.maxAgents) this.evictSilentAgents(at);
    if (!this.agents.has(summary.instanceId) && this.agents.size >= WINDOW_LIMITS.maxAgents) {
      this.dropped++;
      return;
    }
    this.agents.set(summary.instanceId, Object.freeze({
      instanceId: summary.instanceId,
      service: who.service,
      namespace: who.namespace,
      zone: this.zone,
      configVersion: summary.configVersion,
      policyRevision: summary.policyRevision,
      configStale: summary.configStale,
      certNotAfter: summary.certNotAfter,
      receivedAt: at,
    }));
  }

  /** Every caller → callee pair seen within the last `windowMs` (at most the 15 minutes kept). */
  edges(windowMs = WINDOW_SLOT_MS * 5): EdgeView[] {
    interface Pair { source: string; destination: string; protocol: EdgeProtocol; inbound?: EdgeCounts; outbound?: EdgeCounts; denied: number }
    const merged = new Map<string, Pair>();
    const pairOf = (source: string, destination: string, protocol: EdgeProtocol): Pair => {
      const key = `${source} ${destination}`;
      let pair = merged.get(key);
      if (pair === undefined) merged.set(key, (pair = { source, destination, protocol, denied: 0 }));
      return pair;
    };
    for (const slot of this.slotsWithin(windowMs)) {
      for (const e of slot.edges.values()) {
        const pair = pairOf(e.source, e.destination, e.protocol);
        // A pair carried both ways (an HTTP port and a TCP port) counts as HTTP, which has latency.
        if (e.protocol === 'http') pair.protocol = 'http';
        addCounts((pair[e.direction] ??= { requests: 0, failures: 0, latency: new Float64Array(LATENCY_SLOTS) }), e);
      }
      for (const d of slot.denials.values()) if (d.enforced) pairOf(d.source, d.destination, 'tcp').denied += d.count;
    }
    const seconds = Math.min(windowMs, WINDOW_SLOT_MS * WINDOW_SLOTS) / 1000;
    const views: EdgeView[] = [];
    for (const pair of merged.values()) {
      const inbound = pair.inbound !== undefined && pair.inbound.requests > 0;
      const chosen = inbound ? pair.inbound : (pair.outbound ?? pair.inbound);
      views.push(edgeView(pair.source, pair.destination, pair.protocol, chosen, pair.denied, seconds, inbound || pair.outbound === undefined ? 'inbound' : 'outbound'));
    }
    return views.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
  }

  /** The most recent denials first, at most `WINDOW_LIMITS.recentDenials`. */
  recentDenials(): readonly RecentDenial[] {
    return [...this.recent].reverse();
  }

  /** The last report of every agent heard from in the window. */
  agentReports(): AgentReport[] {
    this.evictSilentAgents(this.now());
    return [...this.agents.values()];
  }

  private remember(denial: RecentDenial): void {
    this.recent.push(Object.freeze(denial));
    if (this.recent.length > WINDOW_LIMITS.recentDenials) this.recent.shift();
  }

  private evictSilentAgents(at: number): void {
    for (const [id, report] of this.agents) if (at - report.receivedAt > WINDOW_SLOT_MS * WINDOW_SLOTS) this.agents.delete(id);
  }

  private slotAt(at: number): Slot {
    const minute = Math.floor(at / WINDOW_SLOT_MS);
    const slot = this.slots[minute % WINDOW_SLOTS] as Slot;
    if (slot.minute !== minute) {
      slot.minute = minute;
      slot.edges.clear();
      slot.denials.clear();
    }
    return slot;
  }

  private slotsWithin(windowMs: number): Slot[] {
    const current = Math.floor(this.now() / WINDOW_SLOT_MS);
    // The current minute counts whole: a 1-minute window is the minute in progress plus the one before it.
    const oldest = current - Math.max(1, Math.ceil(windowMs / WINDOW_SLOT_MS));
    return this.slots.filter((s) => s.minute >= oldest && s.minute <= current && s.minute > current - WINDOW_SLOTS);
  }
}

function addCounts(into: EdgeCounts, from: { readonly requests: number; readonly failures: number; readonly latency: ArrayLike<number> }): void {
  into.requests += from.requests;
  into.failures += from.failures;
  for (let i = 0; i < LATENCY_SLOTS; i++) (into.latency[i] as number) += (from.latency[i] as number | undefined) ?? 0;
}

/** A pair's view from summed counts (used here and where the global merges zones). */
export function edgeView(source: string, destination: string, protocol: EdgeProtocol, counts: EdgeCounts | undefined, denied: number, seconds: number, seenBy: EdgeDirection = 'inbound'): EdgeView {
  const requests = counts?.requests ?? 0;
  const failures = counts?.failures ?? 0;
  const latency = counts === undefined ? new Float64Array(LATENCY_SLOTS) : counts.latency;
  return Object.freeze({
    source,
    destination,
    protocol,
    seenBy,
    requests,
    failures,
    ratePerSecond: seconds > 0 ? requests / seconds : 0,
    successRate: requests === 0 ? null : (requests - failures) / requests,
    p50Ms: quantileMs(latency, 0.5),
    p99Ms: quantileMs(latency, 0.99),
    denied,
    latency: Array.from(latency),
  });
}

/** Merges views of the same pairs from several zones (the global's view): counts add, quantiles are recomputed. */
export function mergeEdgeViews(views: readonly EdgeView[], seconds: number): EdgeView[] {
  const merged = new Map<string, { source: string; destination: string; protocol: EdgeProtocol; counts: EdgeCounts; denied: number }>();
  for (const v of views) {
    const key = `${v.protocol} ${v.source} ${v.destination}`;
    let m = merged.get(key);
    if (m === undefined) merged.set(key, (m = { source: v.source, destination: v.destination, protocol: v.protocol, counts: { requests: 0, failures: 0, latency: new Float64Array(LATENCY_SLOTS) }, denied: 0 }));
    addCounts(m.counts, v);
    if (v.protocol === 'http') m.protocol = 'http';
    m.denied += v.denied;
  }
  return [...merged.values()].map((m) => edgeView(m.source, m.destination, m.protocol, m.counts, m.denied, seconds));
}
