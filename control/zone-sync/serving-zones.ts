/**
 * Which zone would serve a call, for `trellis explain --from-zone`: a pure function over what a zone
 * control plane holds (its own registry, and the other zones' exported services from the catalogue).
 *
 * The order is the locality rule callers are meant to follow (issue 15): the caller's own zone first while
 * at least half of its endpoints there are healthy (and at least one is), then every other zone with a
 * healthy endpoint, most healthy endpoints first (name breaks ties), then the caller's zone if it still has
 * any healthy endpoint, then zones with none. The first zone with a healthy endpoint serves the call.
 *
 * It is kept apart on purpose: the data path's balancer (zone ingress, locality-aware failover) owns the
 * real rule; when it lands, this function should be replaced by the balancer's own ordering so that
 * `explain` and the proxy cannot disagree.
 */

/** One zone's endpoints of the destination. */
export interface ZoneEndpoints {
  readonly zone: string;
  readonly healthy: number;
  readonly total: number;
}

export interface ServingZone extends ZoneEndpoints {
  /** Why it sits where it does, for people. */
  readonly why: string;
}

export interface ServingPlan {
  /** Zones in the order a caller would try them. */
  readonly order: readonly ServingZone[];
  /** The zone that would serve the call now; null when no zone has a healthy endpoint. */
  readonly servedBy: string | null;
}

/** Share of a zone's endpoints that must be healthy for the caller to stay in its own zone. */
export const LOCAL_HEALTHY_SHARE = 0.5;

export function servingZones(fromZone: string, zones: readonly ZoneEndpoints[]): ServingPlan {
  const merged = new Map<string, { healthy: number; total: number }>();
  for (const z of zones) {
    const m = merged.get(z.zone) ?? { healthy: 0, total: 0 };
    merged.set(z.zone, { healthy: m.healthy + z.healthy, total: m.total + z.total });
  }
  const own = merged.get(fromZone);
  const ownHealthy = own !== undefined && own.healthy > 0 && own.healthy >= own.total * LOCAL_HEALTHY_SHARE;
  const others = [...merged.entries()]
    .filter(([zone, c]) => zone !== fromZone && c.healthy > 0)
    .sort(([a, x], [b, y]) => y.healthy - x.healthy || (a < b ? -1 : a > b ? 1 : 0))
    .map(([zone, c]): ServingZone => ({ zone, ...c, why: `another zone with ${c.healthy} of ${c.total} endpoints healthy` }));
  const order: ServingZone[] = [];
  if (own !== undefined && ownHealthy) order.push({ zone: fromZone, ...own, why: `the caller's own zone, ${own.healthy} of ${own.total} endpoints healthy` });
  order.push(...others);
  if (own !== undefined && !ownHealthy && own.healthy > 0) order.push({ zone: fromZone, ...own, why: `the caller's own zone, but only ${own.healthy} of ${own.total} endpoints healthy (under ${LOCAL_HEALTHY_SHARE * 100}%)` });
  const unhealthy = [...merged.entries()].filter(([, c]) => c.healthy === 0).sort(([a], [b]) => (a < b ? -1 : 1));
  for (const [zone, c] of unhealthy) order.push({ zone, ...c, why: c.total === 0 ? 'no endpoints' : 'no healthy endpoint' });
  const first = order.find((z) => z.healthy > 0);
  return { order, servedBy: first === undefined ? null : first.zone };
}
