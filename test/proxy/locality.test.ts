/**
 * Locality-aware choice (proxy/outbound/tunnel-client/locality.ts) through the balancer: own zone first,
 * then the configured order, spilling gradually under the threshold, and away from a remote zone whose
 * ingress failed; inside the own zone, own subzone first by the same rule; distributed ZoneFailover rules
 * over the local default, swapped live.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../api/data-plane.js';
import { LoadBalancer } from '../../proxy/outbound/tunnel-client/load-balancer.js';
import type { LocalityOptions } from '../../proxy/outbound/tunnel-client/locality.js';
import { compileTraffic, parseTrafficFiles } from '../../policy/traffic/index.js';

function ep(zone: string, n: number, healthy = true): Endpoint {
  return zone === 'east' ? { address: `10.0.0.${n}`, tunnelPort: 15008, zone, healthy } : { address: `${zone}.ingress`, tunnelPort: 15443 + n, zone, healthy, ingress: { address: `${zone}.ingress`, port: 15443 + n } };
}

function balancer(endpoints: Endpoint[], locality: Omit<LocalityOptions, 'zone'> = {}, random: () => number = Math.random): LoadBalancer {
  const lb = new LoadBalancer({ locality: { zone: 'east', ...locality }, random });
  lb.setServices([{ name: 'orders', namespace: 'shop', endpoints }]);
  return lb;
}

function zonesPicked(lb: LoadBalancer, times = 200): Record<string, number> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < times; i++) {
    const e = lb.pick('orders', 'shop');
    const zone = e?.endpoint.zone ?? 'none';
    seen[zone] = (seen[zone] ?? 0) + 1;
  }
  return seen;
}

describe('locality', () => {
  it('keeps every call in its own zone while enough of it is healthy', () => {
    expect(zonesPicked(balancer([ep('east', 1), ep('east', 2), ep('east', 3, false), ep('west', 1)]))).toEqual({ east: 200 });
  });

  it('fails over to another zone when its own has no healthy endpoint, and back when one returns', () => {
    const endpoints = [ep('east', 1, false), ep('east', 2, false), ep('west', 1)];
    const lb = balancer(endpoints);
    expect(zonesPicked(lb)).toEqual({ west: 200 });
    lb.setServices([{ name: 'orders', namespace: 'shop', endpoints: [ep('east', 1), ep('east', 2), ep('west', 1)] }]);
    expect(zonesPicked(lb)).toEqual({ east: 200 });
  });

  it('spills gradually under the threshold: 1 healthy of 4 keeps half the calls at 50%', () => {
    const lb = balancer([ep('east', 1), ep('east', 2, false), ep('east', 3, false), ep('east', 4, false), ep('west', 1)]);
    const seen = zonesPicked(lb, 4000);
    expect(seen.east! / 4000).toBeGreaterThan(0.4);
    expect(seen.east! / 4000).toBeLessThan(0.6);
    expect(seen.east! + seen.west!).toBe(4000);
    // With no other zone healthy, the degraded zone keeps everything.
    expect(zonesPicked(balancer([ep('east', 1), ep('east', 2, false), ep('east', 3, false), ep('west', 1, false)]))).toEqual({ east: 200 });
  });

  it('follows the configured order (mesh-wide and per service), and an order without "*" never leaves the zones it names', () => {
    const endpoints = [ep('east', 1, false), ep('west', 1), ep('north', 1)];
    expect(zonesPicked(balancer(endpoints, { order: ['east', 'north', '*'] }))).toEqual({ north: 200 });
    expect(zonesPicked(balancer(endpoints, { order: ['east', 'north', '*'], perService: { 'shop/orders': ['east', 'west'] } }))).toEqual({ west: 200 });
    const only = balancer([ep('east', 1, false), ep('north', 1)], { order: ['east', 'west'] });
    // Nothing in the order is healthy: the choice is left to the balancer (every endpoint alike).
    expect(zonesPicked(only)).toEqual({ north: 200 });
  });

  it('moves away from a remote zone whose ingress failed, to the next zone, without outlier detection', () => {
    const lb = balancer([ep('east', 1, false), ep('west', 1), ep('north', 1)], { order: ['east', 'west', 'north'] });
    expect(zonesPicked(lb, 20)).toEqual({ west: 20 });
    lb.reportEndpoint(lb.endpoints('orders', 'shop').find((e) => e.endpoint.zone === 'west')!.key, false);
    expect(zonesPicked(lb, 20)).toEqual({ north: 20 });
  });

  it('changes nothing in a single zone: the usual endpoints, the usual random draws', () => {
    const draws: number[] = [];
    const random = (): number => {
      const r = (draws.length * 0.37) % 1;
      draws.push(r);
      return r;
    };
    const lb = balancer([ep('east', 1), ep('east', 2, false), ep('east', 3, false), ep('east', 4, false), ep('east', 5)], {}, random);
    zonesPicked(lb, 10);
    // Two draws per pick (P2C over the 2 healthy), none for locality.
    expect(draws.length).toBe(20);
  });

  it('puts the caller\'s own zone first when a local order does not name it', () => {
    const endpoints = [ep('east', 1), ep('west', 1), ep('north', 1)];
    expect(zonesPicked(balancer(endpoints, { order: ['west', '*'] }))).toEqual({ east: 200 });
    expect(zonesPicked(balancer([ep('east', 1, false), ep('west', 1), ep('north', 1)], { order: ['north', '*'] }))).toEqual({ north: 200 });
  });
});

describe('subzones inside the caller\'s zone', () => {
  const at = (subzone: string | undefined, n: number, healthy = true, zone = 'east'): Endpoint => ({ ...ep(zone, n, healthy), ...(subzone === undefined ? {} : { labels: { 'trellis.dev/subzone': subzone, version: 'v1' } }) });
  function subzonesPicked(endpoints: Endpoint[], times = 200, options: Omit<LocalityOptions, 'zone'> = { subzone: 'rack-a' }): Record<string, number> {
    const lb = balancer(endpoints, options);
    const seen: Record<string, number> = {};
    for (let i = 0; i < times; i++) {
      const e = lb.pick('orders', 'shop')?.endpoint;
      const key = `${e?.zone ?? 'none'}/${e?.labels?.['trellis.dev/subzone'] ?? '-'}`;
      seen[key] = (seen[key] ?? 0) + 1;
    }
    return seen;
  }

  it('keeps calls in the caller\'s subzone while enough of it is healthy', () => {
    expect(subzonesPicked([at('rack-a', 1), at('rack-a', 2, false), at('rack-b', 3), at('rack-b', 4), at(undefined, 5)])).toEqual({ 'east/rack-a': 200 });
  });

  it('spills gradually to the rest of the zone under the threshold, and wholly when none of the subzone is healthy', () => {
    const seen = subzonesPicked([at('rack-a', 1), at('rack-a', 2, false), at('rack-a', 3, false), at('rack-a', 4, false), at('rack-b', 5), at(undefined, 6)], 4000);
    // 1 healthy of 4 at 50%: rack-a keeps half; the rest of east (rack-b and the endpoint with no subzone) the other half.
    expect(seen['east/rack-a']! / 4000).toBeGreaterThan(0.4);
    expect(seen['east/rack-a']! / 4000).toBeLessThan(0.6);
    expect(seen['east/rack-a']! + seen['east/rack-b']! + seen['east/-']!).toBe(4000);
    expect(subzonesPicked([at('rack-a', 1, false), at('rack-b', 2), at('rack-b', 3)])).toEqual({ 'east/rack-b': 200 });
    // Nothing else healthy in the zone: the degraded subzone keeps every call the zone keeps.
    expect(subzonesPicked([at('rack-a', 1), at('rack-a', 2, false), at('rack-a', 3, false), at('rack-b', 4, false)])).toEqual({ 'east/rack-a': 200 });
    // The zone's own spill comes first: east 1 healthy of 4 keeps half the calls (all of them in rack-a), west the rest.
    const both = subzonesPicked([at('rack-a', 1), at('rack-a', 2, false), at('rack-a', 3, false), at('rack-b', 4, false), at('rack-c', 1, true, 'west')], 2000);
    expect(Object.keys(both).sort()).toEqual(['east/rack-a', 'west/rack-c']);
  });

  it('means nothing in another zone, and nothing to a caller without a subzone', () => {
    // East has no healthy endpoint: west serves, whatever its endpoints\' subzone labels say.
    expect(subzonesPicked([at('rack-a', 1, false), at('rack-a', 2, true, 'west'), at('rack-b', 3, true, 'west')], 400)).toEqual({ 'west/rack-a': expect.any(Number), 'west/rack-b': expect.any(Number) });
    const spread = subzonesPicked([at('rack-a', 1), at('rack-b', 2)], 400, {});
    expect(Object.keys(spread).sort()).toEqual(['east/rack-a', 'east/rack-b']);
  });

  it('draws no extra random number when every healthy endpoint is in the caller\'s subzone', () => {
    const draws: number[] = [];
    const random = (): number => {
      const r = (draws.length * 0.37) % 1;
      draws.push(r);
      return r;
    };
    const lb = balancer([at('rack-a', 1), at('rack-a', 2), at('rack-b', 3, false)], { subzone: 'rack-a' }, random);
    zonesPicked(lb, 10);
    expect(draws.length).toBe(20);
  });
});

describe('distributed ZoneFailover rules', () => {
  const rules = (yaml: string) => compileTraffic(parseTrafficFiles([{ path: 'f.yaml', text: `apiVersion: trellis.dev/v1alpha1\nkind: ZoneFailover\nmetadata: { name: f, namespace: shop }\nspec:\n${yaml}` }])).failover;

  it('win over the local default, change new picks at once, and leave the local default in force when withdrawn', () => {
    const lb = balancer([ep('east', 1, false), ep('west', 1), ep('north', 1)], { order: ['east', 'north', '*'] });
    expect(zonesPicked(lb)).toEqual({ north: 200 });
    expect(lb.setFailover(rules('  destination: orders\n  order: [east, west, "*"]\n'))).toBe(true);
    expect(zonesPicked(lb)).toEqual({ west: 200 });
    expect(lb.failoverFor('orders', 'shop')).toMatchObject({ order: ['east', 'west', '*'], source: 'shop/f' });
    // A rule for callers of another zone does not apply to this one.
    lb.setFailover(rules('  destination: orders\n  order: [west]\n  from: [south]\n'));
    expect(zonesPicked(lb)).toEqual({ north: 200 });
    lb.setFailover(undefined);
    expect(zonesPicked(lb)).toEqual({ north: 200 });
    expect(lb.failoverFor('orders', 'shop')?.source).toBe('local');
  });

  it('set the threshold too: at 100% one unhealthy endpoint of two spills half the calls', () => {
    const lb = balancer([ep('east', 1), ep('east', 2, false), ep('west', 1)]);
    expect(zonesPicked(lb)).toEqual({ east: 200 });
    // A sidecar with no local default says nothing was overridden.
    expect(lb.setFailover(rules('  destination: "*"\n  order: ["*"]\n  threshold: "100%"\n'))).toBe(false);
    const seen = zonesPicked(lb, 4000);
    expect(seen.east! / 4000).toBeGreaterThan(0.4);
    expect(seen.east! / 4000).toBeLessThan(0.6);
  });
});
