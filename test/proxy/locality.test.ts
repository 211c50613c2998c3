/**
 * Locality-aware choice (proxy/outbound/tunnel-client/locality.ts) through the balancer: own zone first,
 * then the configured order, spilling gradually under the threshold, and away from a remote zone whose
 * ingress failed.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../api/data-plane.js';
import { LoadBalancer } from '../../proxy/outbound/tunnel-client/load-balancer.js';
import type { LocalityOptions } from '../../proxy/outbound/tunnel-client/locality.js';

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
});
