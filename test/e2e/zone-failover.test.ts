/**
 * ZoneFailover pushed by a zone control plane, as real processes on loopback: a global control plane,
 * zones west and east, west's ingress; orders runs in both zones (twice in east, in subzones rack-a and
 * rack-b); frontend runs in east, in subzone rack-b.
 *
 * - With no rule, frontend's calls stay in its own zone and, there, in its own subzone.
 * - A ZoneFailover written to east's policy directory sends them to west, live: the same frontend
 *   process, the same kept-alive client connection, no failed request while the rule arrives.
 * - A second rule that conflicts with it is refused whole (the control plane names both) and the first
 *   stays in force; removing the rule brings the calls home.
 */
import { Agent, request } from 'node:http';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allow, app, cleanup, eventually, freePort, requireBuild, steadyLoad, type Mesh, type Proc } from './mesh-support.js';
import { joinZone, startGlobal, startIngress } from './zone-support.js';

let east: Mesh;
let frontend: Proc;
let ordersPort: number;
/** One kept-alive connection to frontend's outbound listener for orders, held across the config changes. */
const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });

function onKeptConnection(path: string): Promise<{ body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: ordersPort, path, agent: keepAlive, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve({ body, reused: req.reusedSocket }) : reject(new Error(`${res.statusCode}: ${body}`))));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function servedBy(times = 20): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < times; i++) seen.add((await onKeptConnection(`/probe-${i}`)).body.split(' ')[0] as string);
  return seen;
}

const failover = (name: string, order: string): string => `apiVersion: trellis.dev/v1alpha1
kind: ZoneFailover
metadata: { name: ${name}, namespace: default }
spec:
  destination: orders
  order: ${order}
`;

beforeAll(async () => {
  requireBuild();
  const global = await startGlobal();
  const policies = { 'orders.yaml': allow('orders', ['frontend']) };
  let west: Mesh;
  [west, east] = await Promise.all([joinZone(global, 'west', policies), joinZone(global, 'east', policies)]);
  await startIngress(west, await freePort());
  const [westOrders, rackA, rackB] = await Promise.all([app('orders-west'), app('orders-east-rack-a'), app('orders-east-rack-b')]);
  await Promise.all([
    west.agent({ service: 'orders', appPort: westOrders.port, protocol: 'http' }),
    east.agent({ service: 'orders', appPort: rackA.port, protocol: 'http', extra: ['--subzone', 'rack-a'] }),
    east.agent({ service: 'orders', appPort: rackB.port, protocol: 'http', extra: ['--label', 'trellis.dev/subzone=rack-b'] }),
  ]);
  ordersPort = await freePort();
  frontend = await east.agent({ service: 'frontend', appPort: await freePort(), protocol: 'http', upstreams: [`orders=${ordersPort}`], extra: ['--subzone', 'rack-b'] });
  // West's orders must be in frontend's view (through west's ingress) before a rule can send calls there.
  await eventually(async () => {
    const view = await fetch(`http://127.0.0.1:${String(frontend.ready.admin)}/config`).then((r) => r.json() as Promise<{ snapshot?: { upstreams: { name: string; endpoints: { zone: string }[] }[] } }>);
    const zones = view.snapshot?.upstreams.find((u) => u.name === 'orders')?.endpoints.map((e) => e.zone) ?? [];
    return zones.filter((z) => z === 'east').length === 2 && zones.includes('west');
  }, "both zones' orders in frontend's config", 30_000);
}, 120_000);

afterAll(async () => {
  keepAlive.destroy();
  await cleanup();
});

describe('ZoneFailover pushed live', { timeout: 60_000 }, () => {
  it('without a rule, frontend stays in its zone and its subzone', async () => {
    await eventually(async () => (await onKeptConnection('/first')).body.startsWith('orders-east-rack-b') || undefined, 'orders served in east', 30_000);
    expect(await servedBy()).toEqual(new Set(['orders-east-rack-b']));
  });

  it('a pushed rule sends the calls to west at once, on the same connection, with no failed request', async () => {
    const load = steadyLoad(ordersPort, 2);
    const pid = frontend.child.pid;
    east.setPolicy('failover.yaml', failover('orders-west-first', '[west, east]'));
    await eventually(async () => (await onKeptConnection('/after')).body.startsWith('orders-west') || undefined, 'orders served from west', 20_000);
    const { ok, failures } = await load.stop();
    expect(ok).toBeGreaterThan(0);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(await servedBy()).toEqual(new Set(['orders-west']));
    expect((await onKeptConnection('/same')).reused).toBe(true);
    expect(frontend.child.pid).toBe(pid);
    expect(frontend.child.exitCode).toBeNull();
  });

  it('a conflicting rule is refused whole, naming both; the rule in force stays', async () => {
    east.setPolicy('failover-2.yaml', failover('orders-east-only', '[east]'));
    const status = await eventually(async () => {
      const state = (await fetch(`${String(east.control.ready.admin)}/policy`).then((r) => r.json())) as { error?: { message: string } };
      return state.error?.message;
    }, 'the control plane refuses the conflicting set', 20_000);
    expect(status).toMatch(/ZoneFailover default\/orders-west-first conflicts with ZoneFailover default\/orders-east-only|ZoneFailover default\/orders-east-only conflicts with ZoneFailover default\/orders-west-first/);
    expect(await servedBy()).toEqual(new Set(['orders-west']));
    rmSync(join(east.policyDir, 'failover-2.yaml'));
  });

  it('removing the rule brings the calls home', async () => {
    rmSync(join(east.policyDir, 'failover.yaml'));
    await eventually(async () => (await onKeptConnection('/home')).body.startsWith('orders-east-rack-b') || undefined, 'orders served in east again', 20_000);
    expect(await servedBy()).toEqual(new Set(['orders-east-rack-b']));
  });
});
