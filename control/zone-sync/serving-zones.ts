/**
 * Which zone would serve a call, for `trellis explain --from-zone`: a pure function over what a zone
 * control plane holds (its own registry, and the other zones' exported services from the catalogue) and
 * the failover in force for that caller (the ZoneFailover rule, else `[own zone, "*"]` at 50%).
 *
 * It follows the balancer's rule (proxy/outbound/tunnel-client/locality.ts) zone by zone: tiers in the
 * order, `"*"` being every zone not named before it; the first tier with healthy endpoints whose healthy
 * count reaches `threshold × total` serves; a tier under it keeps `healthy / (threshold × total)` of the
 * calls and the next tier with healthy endpoints takes the rest; a degraded tier with no later one keeps
 * everything; and with no tier of the order healthy, any zone with a healthy endpoint serves.
 * test/control/serving-zones.test.ts holds the two to the same answers.
 */
import type { FailoverChoice } from '../../policy/traffic/index.js';

/** One zone's endpoints of the destination. */
export interface ZoneEndpoints {
  readonly zone: string;
  readonly healthy: number;
  readonly total: number;
}

export interface ServingZone extends ZoneEndpoints {
  /** Its place in the failover order (1-based); 0: in no tier of the order (reached only as a last resort). */
  readonly tier: number;
  /** Why it sits where it does, for people. */
  readonly why: string;
}

export interface ServingPlan {
  /** Zones in the order a caller would try them. */
  readonly order: readonly ServingZone[];
  /** The zone (or zones of a `"*"` tier, comma-separated) that serves the call now; null when none has a healthy endpoint. */
  readonly servedBy: string | null;
  /** When the serving tier is under its threshold: the share it keeps, and who takes the rest. */
  readonly spill?: { readonly keeps: number; readonly to: string };
  /** The order and threshold followed, and the ZoneFailover they came from (`default`: none). */
  readonly failover: FailoverChoice;
}

/** The failover of a caller with no ZoneFailover rule and no local default. */
export function defaultFailover(fromZone: string): FailoverChoice {
  return { order: [fromZone, '*'], threshold: 0.5, source: 'default' };
}

interface Tier {
  readonly zones: readonly string[];
  readonly healthy: number;
  readonly total: number;
}

function tiersOf(order: readonly string[], counts: ReadonlyMap<string, { healthy: number; total: number }>): Tier[] {
  const named = new Set<string>();
  return order.map((name) => {
    const zones = name === '*' ? [...counts.keys()].filter((z) => !named.has(z)).sort() : counts.has(name) ? [name] : [];
    if (name !== '*') named.add(name);
    else for (const z of zones) named.add(z);
    let healthy = 0;
    let total = 0;
    for (const z of zones) {
      healthy += counts.get(z)?.healthy ?? 0;
      total += counts.get(z)?.total ?? 0;
    }
    return { zones, healthy, total };
  });
}

export function servingZones(fromZone: string, zones: readonly ZoneEndpoints[], failover: FailoverChoice = defaultFailover(fromZone)): ServingPlan {
  const counts = new Map<string, { healthy: number; total: number }>();
  for (const z of zones) {
    const m = counts.get(z.zone) ?? { healthy: 0, total: 0 };
    counts.set(z.zone, { healthy: m.healthy + z.healthy, total: m.total + z.total });
  }
  const tiers = tiersOf(failover.order, counts);
  let chosen = -1;
  let degraded = -1;
  let keeps = 1;
  for (const [i, t] of tiers.entries()) {
    if (t.healthy === 0) continue;
    if (degraded >= 0) {
      chosen = i;
      break;
    }
    if (t.healthy >= failover.threshold * t.total) {
      chosen = i;
      break;
    }
    degraded = i;
    keeps = t.healthy / (failover.threshold * t.total);
  }
  const order: ServingZone[] = [];
  const placed = new Set<string>();
  for (const [i, t] of tiers.entries()) {
    for (const zone of t.zones) {
      const c = counts.get(zone) ?? { healthy: 0, total: 0 };
      const own = zone === fromZone ? "the caller's own zone, " : '';
      const where = failover.order[i] === '*' ? `any zone not named (tier ${i + 1})` : `tier ${i + 1}`;
      const health = c.healthy === 0 ? 'no healthy endpoint' : `${c.healthy} of ${c.total} endpoints healthy`;
      const keeping = chosen < 0 ? 'keeps every call, as no later zone is healthy' : `keeps ${(keeps * 100).toFixed(0)}% of calls`;
      const under = i === degraded ? ` (under ${failover.threshold * 100}% of the tier's usual count: ${keeping})` : '';
      order.push({ zone, ...c, tier: i + 1, why: `${own}${where}, ${health}${under}` });
      placed.add(zone);
    }
  }
  // Zones the order leaves out (no "*"): the balancer falls back to them only when no tier is healthy.
  for (const [zone, c] of [...counts.entries()].filter(([z]) => !placed.has(z)).sort(([a], [b]) => (a < b ? -1 : 1))) {
    order.push({ zone, ...c, tier: 0, why: `not in the order: used only when no zone of it is healthy, ${c.healthy === 0 ? 'no healthy endpoint' : `${c.healthy} of ${c.total} endpoints healthy`}` });
  }
  const healthyZones = (t: readonly string[]): string => t.filter((z) => (counts.get(z)?.healthy ?? 0) > 0).join(', ');
  if (chosen >= 0 && degraded >= 0) {
    return { order, servedBy: healthyZones((tiers[degraded] as Tier).zones), spill: { keeps, to: healthyZones((tiers[chosen] as Tier).zones) }, failover };
  }
  const serving = chosen >= 0 ? chosen : degraded;
  if (serving >= 0) return { order, servedBy: healthyZones((tiers[serving] as Tier).zones), failover };
  const fallback = healthyZones([...counts.keys()].sort());
  return { order, servedBy: fallback === '' ? null : fallback, failover };
}
