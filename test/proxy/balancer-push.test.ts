/**
 * Balancer skew after a config push: requests in flight across a push must still lower the counts the
 * balancer compares, so an endpoint busy at push time gets traffic again once those requests end.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import { send } from './http-client.js';
import { endpointOf, startMesh, type TestMesh } from './http-harness.js';

describe('load balancing after a config push with requests in flight', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('spreads traffic over both endpoints once the requests in flight at the push have ended', async () => {
    const held: ServerResponse[] = [];
    let holding = true;
    mesh = await startMesh({
      apps: [
        (_req, res) => {
          if (holding) held.push(res);
          else res.end('A');
        },
        (_req, res) => res.end('B'),
      ],
    });
    const [a, b] = mesh.tunnels;
    // Only A at first: 20 requests in flight to it.
    mesh.setEndpoints([endpointOf(a!.port)]);
    const inFlight = Array.from({ length: 20 }, (_, i) => send({ port: mesh!.outboundPort, path: `/held${i}` }));
    while (held.length < 20) await new Promise((r) => setTimeout(r, 5));
    // The push: B joins while A's 20 requests are still in flight.
    mesh.setEndpoints([endpointOf(a!.port), endpointOf(b!.port)]);
    holding = false;
    for (const res of held) res.end('A');
    for (const res of await Promise.all(inFlight)) expect(res.status).toBe(200);

    const answers = new Map<string, number>();
    for (let i = 0; i < 40; i += 1) {
      const res = await send({ port: mesh.outboundPort, path: `/after${i}` });
      answers.set(res.body, (answers.get(res.body) ?? 0) + 1);
    }
    expect(answers.get('A') ?? 0).toBeGreaterThan(0);
    expect(answers.get('B') ?? 0).toBeGreaterThan(0);
    expect(mesh.balancer.endpoints('payments', 'shop').map((e) => e.outstanding)).toEqual([0, 0]);
  });
});
