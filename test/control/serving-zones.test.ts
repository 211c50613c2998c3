/**
 * Which zone would serve a call (control/zone-sync/serving-zones.ts, for `trellis explain --from-zone`),
 * and that it agrees with the balancer's own locality step (proxy/outbound/tunnel-client/locality.ts):
 * the same counts, order and threshold put every pick of the balancer in the zones explain names.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../api/data-plane.js';
import { servingZones, type ZoneEndpoints } from '../../control/zone-sync/serving-zones.js';
import { compileTraffic, parseTrafficFiles, type FailoverChoice } from '../../policy/traffic/index.js';
import { LoadBalancer } from '../../proxy/outbound/tunnel-client/load-balancer.js';

const choice = (order: string[], threshold = 0.5): FailoverChoice => ({ order, threshold, source: 'test' });

describe('which zone would serve a call (explain --from-zone)', () => {
  it('keeps the caller in its own zone while half its endpoints there are healthy', () => {
    const plan = servingZones('east', [
      { zone: 'east', healthy: 1, total: 2 },
      { zone: 'west', healthy: 3, total: 3 },
    ]);
    expect(plan.servedBy).toBe('east');
    expect(plan.spill).toBeUndefined();
    expect(plan.order.map((z) => z.zone)).toEqual(['east', 'west']);
    expect(plan.failover).toMatchObject({ order: ['east', '*'], threshold: 0.5, source: 'default' });
  });

  it('spills part of the calls from a degraded own zone to the other zones, and all of them from an empty one', () => {
    const degraded = servingZones('east', [
      { zone: 'east', healthy: 1, total: 4 },
      { zone: 'west', healthy: 1, total: 1 },
      { zone: 'north', healthy: 2, total: 2 },
      { zone: 'south', healthy: 0, total: 2 },
    ]);
    expect(degraded.order.map((z) => [z.zone, z.tier])).toEqual([['east', 1], ['north', 2], ['south', 2], ['west', 2]]);
    // 1 healthy of 4 at 50%: east keeps 1 / 2 of the calls, the "*" tier (north, west) takes the rest.
    expect(degraded.servedBy).toBe('east');
    expect(degraded.spill).toEqual({ keeps: 0.5, to: 'north, west' });
    expect(degraded.order[0]?.why).toMatch(/keeps 50% of calls/);
    expect(servingZones('east', [{ zone: 'west', healthy: 1, total: 1 }]).servedBy).toBe('west');
  });

  it('follows a ZoneFailover order: named zones in turn, "*" for the rest, zones left out only as a last resort', () => {
    const zones: ZoneEndpoints[] = [
      { zone: 'east', healthy: 0, total: 2 },
      { zone: 'west', healthy: 2, total: 2 },
      { zone: 'north', healthy: 1, total: 1 },
    ];
    expect(servingZones('east', zones, choice(['east', 'north', 'west'])).servedBy).toBe('north');
    const leftOut = servingZones('east', [{ zone: 'east', healthy: 0, total: 1 }, { zone: 'south', healthy: 1, total: 1 }], choice(['east', 'west']));
    expect(leftOut.servedBy).toBe('south');
    expect(leftOut.order.find((z) => z.zone === 'south')).toMatchObject({ tier: 0 });
  });

  it('says no zone serves the call when none has a healthy endpoint, and merges counts of one zone', () => {
    expect(servingZones('east', [{ zone: 'east', healthy: 0, total: 1 }]).servedBy).toBeNull();
    expect(servingZones('east', []).servedBy).toBeNull();
    const merged = servingZones('east', [
      { zone: 'east', healthy: 0, total: 1 },
      { zone: 'east', healthy: 1, total: 1 },
    ]);
    expect(merged.order).toEqual([expect.objectContaining({ zone: 'east', healthy: 1, total: 2 })]);
  });
});

describe('explain and the balancer agree', () => {
  function endpointsOf(zones: readonly ZoneEndpoints[]): Endpoint[] {
    return zones.flatMap((z, zi) => Array.from({ length: z.total }, (_, i): Endpoint => ({ address: `10.${zi}.0.${i + 1}`, tunnelPort: 15008, zone: z.zone, healthy: i < z.healthy })));
  }

  /** The zones the balancer picks from, over many picks, with the rule a ZoneFailover file gives. */
  function picked(zones: readonly ZoneEndpoints[], yaml: string): Set<string> {
    const lb = new LoadBalancer({ locality: { zone: 'east' } });
    lb.setServices([{ name: 'orders', namespace: 'shop', endpoints: endpointsOf(zones) }]);
    lb.setFailover(compileTraffic(parseTrafficFiles([{ path: 'f.yaml', text: yaml }])).failover);
    const seen = new Set<string>();
    for (let i = 0; i < 400; i++) seen.add(lb.pick('orders', 'shop')?.endpoint.zone ?? 'none');
    return seen;
  }

  const rule = (order: string, threshold: string): string => `apiVersion: trellis.dev/v1alpha1\nkind: ZoneFailover\nmetadata: { name: f, namespace: shop }\nspec: { destination: orders, order: ${order}, threshold: "${threshold}" }\n`;

  it('on healthy, degraded, empty and left-out zones', () => {
    const cases: [ZoneEndpoints[], string, string][] = [
      [[{ zone: 'east', healthy: 2, total: 2 }, { zone: 'west', healthy: 1, total: 1 }], '[west, "*"]', '50%'],
      [[{ zone: 'east', healthy: 1, total: 4 }, { zone: 'west', healthy: 1, total: 1 }, { zone: 'north', healthy: 1, total: 1 }], '[north, "*"]', '50%'],
      [[{ zone: 'east', healthy: 0, total: 3 }, { zone: 'west', healthy: 2, total: 3 }, { zone: 'north', healthy: 1, total: 1 }], '[west, north]', '80%'],
      [[{ zone: 'east', healthy: 0, total: 1 }, { zone: 'south', healthy: 1, total: 1 }], '[west]', '50%'],
      [[{ zone: 'east', healthy: 3, total: 4 }, { zone: 'west', healthy: 1, total: 1 }], '[east, west]', '100%'],
    ];
    for (const [zones, order, threshold] of cases) {
      const failover = compileTraffic(parseTrafficFiles([{ path: 'f.yaml', text: rule(order, threshold) }])).failover.resolve('east', 'shop', 'orders');
      const plan = servingZones('east', zones, failover);
      const expected = new Set([...(plan.servedBy ?? 'none').split(', '), ...(plan.spill?.to.split(', ') ?? [])]);
      expect(picked(zones, rule(order, threshold)), `${order} at ${threshold}`).toEqual(expected);
    }
  });
});
