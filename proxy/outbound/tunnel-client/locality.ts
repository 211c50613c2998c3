/**
 * Locality-aware choice between zones, on by default and needing no outlier detection: a caller prefers
 * endpoints of its own zone and fails over, zone by zone in a configured order, when the healthy ones of a
 * zone fall under a threshold of its usual count.
 *
 * - Order: per service (`perService['ns/name']`), else mesh-wide (`order`), else `[own zone, "*"]`; `"*"`
 *   is every zone not named before it (Kuma's `failover`, Istio's `failoverPriority`, as a list).
 * - Threshold (default 0.5, Kuma's `failoverThreshold`): a zone with at least `threshold × total` healthy
 *   endpoints takes all the traffic. Under it, traffic spills *gradually*: the zone keeps the share
 *   `healthy / (threshold × total)` and the rest goes to the next zone that has healthy endpoints (a
 *   weighted spill, not a cliff). With none healthy it is skipped. With no later zone healthy, a degraded
 *   zone keeps everything.
 * - "Healthy" is what the balancer already judges (control plane health plus local ejection), so a remote
 *   zone whose ingress refuses or cannot be reached drops out within one failed dial, and a zone that goes
 *   offline (its lease) leaves the config: either way traffic moves to the next zone, and requests already
 *   sent are not retried by this choice.
 *
 * Runs per pick: no allocation, a few passes over the candidates.
 */
import type { BalancedEndpoint } from './load-balancer.js';

export interface LocalityOptions {
  /** The caller's own zone. */
  readonly zone: string;
  /** Mesh-wide failover order of zone names and `"*"`; default `[zone, "*"]`. */
  readonly order?: readonly string[];
  /** Per `namespace/service`, an order that replaces the mesh-wide one. */
  readonly perService?: Readonly<Record<string, readonly string[]>>;
  /** Share of a zone's usual endpoint count under which it spills to the next (0-1, default 0.5). */
  readonly threshold?: number;
}

export const DEFAULT_FAILOVER_THRESHOLD = 0.5;

/** Whether an endpoint of `zone` belongs to tier `tier` of `order`. */
function inTier(zone: string, order: readonly string[], tier: number): boolean {
  const name = order[tier] as string;
  if (name !== '*') return zone === name;
  for (let i = 0; i < tier; i++) if (order[i] === zone) return false;
  return true;
}

export class Locality {
  private readonly threshold: number;
  private readonly defaultOrder: readonly string[];

  constructor(private readonly options: LocalityOptions) {
    this.threshold = Math.min(1, Math.max(0, options.threshold ?? DEFAULT_FAILOVER_THRESHOLD));
    this.defaultOrder = options.order ?? [options.zone, '*'];
  }

  orderFor(serviceKey: string): readonly string[] {
    return this.options.perService?.[serviceKey] ?? this.defaultOrder;
  }

  /**
   * Keeps in `candidates` (healthy, eligible) only the endpoints of the zone to use for this pick, in place.
   * `all` are the service's endpoints eligible but for health (the usual count); `random` in [0, 1).
   */
  narrow(candidates: BalancedEndpoint[], all: readonly BalancedEndpoint[], eligible: (e: BalancedEndpoint) => boolean, order: readonly string[], random: () => number): void {
    let chosen = -1;
    let degraded = -1;
    let keep = 1;
    for (let tier = 0; tier < order.length && chosen < 0; tier++) {
      let healthy = 0;
      for (const e of candidates) if (inTier(e.endpoint.zone, order, tier)) healthy += 1;
      if (healthy === 0) continue;
      if (degraded >= 0) {
        // The next zone with healthy endpoints takes what the degraded one does not keep.
        chosen = random() < keep ? degraded : tier;
        break;
      }
      let total = 0;
      for (const e of all) if (eligible(e) && inTier(e.endpoint.zone, order, tier)) total += 1;
      const enough = this.threshold * total;
      if (healthy >= enough) chosen = tier;
      else {
        degraded = tier;
        keep = healthy / enough;
      }
    }
    if (chosen < 0) chosen = degraded;
    if (chosen < 0) return; // no zone in the order has a healthy endpoint: leave the choice as it was
    let kept = 0;
    for (const e of candidates) if (inTier(e.endpoint.zone, order, chosen)) candidates[kept++] = e;
    candidates.length = kept;
  }
}
