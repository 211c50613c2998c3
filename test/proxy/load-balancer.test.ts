import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LoadBalancer, type BalancedEndpoint } from '../../proxy/outbound/tunnel-client/load-balancer.js';
import type { Endpoint } from '../../api/data-plane.js';

function ep(address: string, healthy = true): Endpoint {
  return { address, tunnelPort: 15008, zone: 'z1', healthy };
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('LoadBalancer', () => {
  it('returns undefined for unknown services and services without endpoints', () => {
    const lb = new LoadBalancer();
    lb.setServices([{ name: 'empty', namespace: 'shop', endpoints: [] }]);
    expect(lb.pick('nope', 'shop')).toBeUndefined();
    expect(lb.pick('empty', 'shop')).toBeUndefined();
  });

  it('round robin visits every healthy endpoint in turn and skips unhealthy ones', () => {
    const lb = new LoadBalancer({ strategy: 'round-robin' });
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('10.0.0.1'), ep('10.0.0.2', false), ep('10.0.0.3')] }]);
    const seen = Array.from({ length: 4 }, () => lb.pick('api', 'shop')?.endpoint.address);
    expect(new Set(seen)).toEqual(new Set(['10.0.0.1', '10.0.0.3']));
    expect(seen[0]).not.toBe(seen[1]);
  });

  it('power of two choices prefers the endpoint with fewer outstanding requests', () => {
    const lb = new LoadBalancer({ random: seeded(7) });
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a'), ep('b')] }]);
    const a = lb.endpoints('api', 'shop')[0]!;
    for (let i = 0; i < 5; i += 1) lb.begin(a);
    for (let i = 0; i < 50; i += 1) expect(lb.pick('api', 'shop')?.endpoint.address).toBe('b');
  });

  it('spreads load evenly when outstanding counts track picks', () => {
    const lb = new LoadBalancer({ random: seeded(42) });
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a'), ep('b'), ep('c'), ep('d')] }]);
    for (let i = 0; i < 400; i += 1) lb.begin(lb.pick('api', 'shop')!);
    const counts = lb.endpoints('api', 'shop').map((e) => e.outstanding);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(10); // 100 each on average; P2C keeps the gap small
  });

  it('honours exclude, and ejects an endpoint after a failure until its cool-down passes', () => {
    let now = 1_000;
    const lb = new LoadBalancer({ now: () => now, failureCooldownMs: 100 });
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a'), ep('b')] }]);
    const [a, b] = lb.endpoints('api', 'shop');
    expect(lb.pick('api', 'shop', new Set([a!.key]))?.key).toBe(b!.key);
    lb.reportFailure(a!);
    for (let i = 0; i < 20; i += 1) expect(lb.pick('api', 'shop')?.key).toBe(b!.key);
    expect(lb.pick('api', 'shop', new Set([b!.key]))?.key).toBe(a!.key); // degraded: still offered
    expect(lb.pick('api', 'shop', new Set([a!.key, b!.key]))).toBeUndefined();
    now += 101;
    const picked = new Set(Array.from({ length: 40 }, () => lb.pick('api', 'shop')?.key));
    expect(picked).toEqual(new Set([a!.key, b!.key]));
  });

  it('keeps observed state across a config update for endpoints that stay', () => {
    const lb = new LoadBalancer();
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a')] }]);
    const a = lb.endpoints('api', 'shop')[0]!;
    lb.begin(a);
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a'), ep('b')] }]);
    expect(lb.endpoints('api', 'shop')[0]!.outstanding).toBe(1);
  });
});

describe('LoadBalancer across config pushes (balancer skew after a push)', () => {
  const universe = ['a', 'b', 'c', 'd'];
  type Command = { op: 'pick' } | { op: 'release'; index: number; ok: boolean } | { op: 'push'; present: boolean[]; healthy: boolean[] };
  const command: fc.Arbitrary<Command> = fc.oneof(
    fc.constant<Command>({ op: 'pick' }),
    fc.record({ op: fc.constant('release' as const), index: fc.nat(), ok: fc.boolean() }),
    fc.record({ op: fc.constant('push' as const), present: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), healthy: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }) }),
  );

  it('keeps outstanding equal to the unreleased picks of each endpoint, never negative, under any interleaving', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 80 }), fc.integer(), (commands, seed) => {
        const lb = new LoadBalancer({ random: seeded(seed) });
        lb.setServices([{ name: 'api', namespace: 'shop', endpoints: universe.map((a) => ep(a)) }]);
        const held: BalancedEndpoint[] = [];
        const seen = new Set<BalancedEndpoint>();
        for (const c of commands) {
          if (c.op === 'pick') {
            const e = lb.pick('api', 'shop');
            if (e !== undefined) {
              lb.begin(e);
              held.push(e);
              seen.add(e);
            }
          } else if (c.op === 'release') {
            if (held.length === 0) continue;
            const [e] = held.splice(c.index % held.length, 1);
            lb.end(e!, c.ok);
          } else {
            lb.setServices([{ name: 'api', namespace: 'shop', endpoints: universe.filter((_, i) => c.present[i]).map((a, i) => ep(a, c.healthy[i])) }]);
          }
          for (const e of seen) {
            expect(e.outstanding).toBeGreaterThanOrEqual(0);
            expect(e.outstanding).toBe(held.filter((h) => h === e).length);
          }
          // What the balancer compares is what callers decrement: per endpoint identity, one object.
          for (const current of lb.endpoints('api', 'shop')) {
            expect(current.outstanding).toBe(held.filter((h) => h.key === current.key).length);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('an endpoint that left with requests in flight and came back gets its object, and its count, back', () => {
    const lb = new LoadBalancer();
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a'), ep('b')] }]);
    const a = lb.endpoints('api', 'shop')[0]!;
    lb.begin(a);
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('b')] }]);
    lb.setServices([{ name: 'api', namespace: 'shop', endpoints: [ep('a', false), ep('b')] }]);
    const back = lb.endpoints('api', 'shop')[0]!;
    expect(back).toBe(a);
    expect(back.endpoint.healthy).toBe(false);
    lb.end(a);
    expect(back.outstanding).toBe(0);
  });
});
