/**
 * Cross-zone traffic, as real processes on loopback (the same story with private networks, NAT routers, a
 * VM, a zone cut off and tcpdump is test/e2e/multizone-netns.test.ts, when root): a global control plane,
 * zones west and east, and west's zone ingress (`trellis ingress run`).
 *
 * - frontend in east calls payments, which exists only in west, through west's ingress; payments' sidecar
 *   sees frontend's own SPIFFE ID (nested TLS: the ingress is not the caller);
 * - a call west's policy denies gets 403 naming the rule, across the zones;
 * - orders runs in both zones: east's dies and frontend's calls go to west's orders, with no failed request
 *   beyond those in flight, and the failover time is printed;
 * - the global control plane killed: cross-zone calls keep flowing;
 * - west's ingress killed: payments fails with the ingress unreachable; restarted: calls flow again;
 * - vault runs in west with `--no-export`: east's caller that dials west's ingress for it anyway (a static
 *   sidecar with frontend's identity) gets `unknown-service`, counted by the ingress and by the caller,
 *   while payments works through the same ingress for the same caller.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { allow, app, call, cleanup, eventually, freePort, requireBuild, spawnTrellis, steadyLoad, tempDir, type Mesh, type Proc } from './mesh-support.js';
import { joinZone, startGlobal, startIngress as startIngressOf, type Global } from './zone-support.js';

function getText(base: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(new URL(path, base), (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject).end();
  });
}

let theGlobal: Global;
let west: Mesh;
let east: Mesh;
let ingress: Proc;
let global: Proc;
let ingressPort: number;
let frontend: Proc;
let paymentsAgent: Proc;
let eastOrders: { port: number; hits: () => number; server: Server };
let vault: { port: number; hits: () => number };
let paymentsPort = 0;
let frontendDir: string;
const ports = { payments: 0, orders: 0, ledger: 0 };

const startIngress = (): Promise<Proc> => startIngressOf(west, ingressPort);

beforeAll(async () => {
  requireBuild();
  theGlobal = await startGlobal();
  global = theGlobal.proc;
  // vault allows frontend: if west's ingress forwarded to it, the call would succeed.
  const policies = { 'payments.yaml': allow('payments', ['frontend']), 'orders.yaml': allow('orders', ['frontend']), 'ledger.yaml': allow('ledger', ['billing']), 'vault.yaml': allow('vault', ['frontend']) };
  [west, east] = await Promise.all([joinZone(theGlobal, 'west', policies), joinZone(theGlobal, 'east', policies)]);
  ingressPort = await freePort();
  ingress = await startIngress();
  const [payments, westOrders, ledger] = await Promise.all([app('payments'), app('orders-west'), app('ledger')]);
  vault = await app('vault');
  paymentsPort = payments.port;
  await west.agent({ service: 'vault', appPort: vault.port, protocol: 'http', extra: ['--no-export'] });
  eastOrders = await app('orders-east');
  paymentsAgent = await west.agent({ service: 'payments', appPort: payments.port, protocol: 'http' });
  await west.agent({ service: 'orders', appPort: westOrders.port, protocol: 'http' });
  await west.agent({ service: 'ledger', appPort: ledger.port, protocol: 'http' });
  await east.agent({ service: 'orders', appPort: eastOrders.port, protocol: 'http' });
  [ports.payments, ports.orders, ports.ledger] = await Promise.all([freePort(), freePort(), freePort()]);
  frontendDir = tempDir('trellis-frontend-');
  frontend = await east.agent({ service: 'frontend', appPort: await freePort(), protocol: 'http', upstreams: [`payments=${ports.payments}`, `orders=${ports.orders}`, `ledger=${ports.ledger}`], dataDir: frontendDir });
}, 120_000);

afterAll(cleanup);

describe('zone ingress between two zones', { timeout: 60_000 }, () => {
  it('frontend in east calls payments, only in west, through west\'s ingress; payments sees frontend itself', async () => {
    const res = await eventually(async () => {
      const r = await call(ports.payments, '/pay');
      return r.status === 200 ? r : undefined;
    }, 'payments answers across the zones', 30_000);
    expect(res.body).toBe('payments GET /pay\n');
    const metrics = await getText(paymentsAgent.ready.admin === undefined ? '' : `http://127.0.0.1:${String(paymentsAgent.ready.admin)}`, '/metrics');
    expect(metrics).toMatch(/trellis_http_requests_total\{[^}]*source="default\/frontend"[^}]*destination="default\/payments"/);
    const ingressMetrics = await getText(`http://127.0.0.1:${String(ingress.ready.admin)}`, '/metrics');
    expect(ingressMetrics).toMatch(/trellis_ingress_streams_total\{result="ok"[^}]*destination="default\/payments"\} [1-9]/);
  });

  it('a cross-zone call the destination\'s policy denies gets 403 naming the rule', async () => {
    const res = await eventually(async () => {
      const r = await call(ports.ledger, '/');
      return r.status === 403 ? r : undefined;
    }, 'ledger refuses frontend', 30_000);
    expect(res.body).toMatch(/denied/);
  });

  it('orders dies in east and frontend\'s calls go to west\'s orders, with nothing failed but what was in flight', async () => {
    await eventually(async () => (await call(ports.orders, '/')).body.startsWith('orders-east') || undefined, 'orders served in east first', 30_000);
    // West's orders must be known as the failover target before east's goes.
    await eventually(async () => {
      const view = JSON.parse(await getText(`http://127.0.0.1:${String(frontend.ready.admin)}`, '/config')) as { snapshot?: { upstreams: { name: string; endpoints: { zone: string }[] }[] } };
      return view.snapshot?.upstreams.find((u) => u.name === 'orders')?.endpoints.some((e) => e.zone === 'west');
    }, 'west\'s orders in frontend\'s config', 30_000);
    const load = steadyLoad(ports.orders, 2);
    await new Promise((r) => setTimeout(r, 500));
    const killedAt = Date.now();
    eastOrders.server.close();
    eastOrders.server.closeAllConnections();
    await eventually(async () => (await call(ports.orders, '/')).body.startsWith('orders-west') || undefined, 'orders served from west', 20_000);
    const failoverMs = Date.now() - killedAt;
    console.log(`failover east → west for orders: ${failoverMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
    const { ok, failures } = await load.stop();
    expect(ok).toBeGreaterThan(0);
    // Requests in flight on the dying app's connections may fail; none after the failover.
    expect(failures.length, failures.join('\n')).toBeLessThanOrEqual(2);
  });

  it("a service west does not export answers unknown-service through west's ingress, even to a caller that dials it there", async () => {
    // East never learns vault (no record goes up), so this caller is told by hand: frontend's own identity
    // (from its agent's data dir), vault and payments both "via west's ingress".
    const dir = tempDir('trellis-east-caller-');
    const [vaultListen, paymentsListen, admin] = await Promise.all([freePort(), freePort(), freePort()]);
    const viaWest = `{ address: 127.0.0.1, tunnelPort: ${ingressPort}, ingressPort: ${ingressPort}, zone: west }`;
    writeFileSync(join(dir, 'proxy.yaml'), `service: frontend
namespace: default
trustDomain: trellis.local
zone: east
identity:
  certificate: ${join(frontendDir, 'identity', 'cert.pem')}
  key: ${join(frontendDir, 'identity', 'key.pem')}
  trustBundle: ${join(frontendDir, 'identity', 'bundle.pem')}
tunnel: { address: 127.0.0.1, port: 0 }
admin: { address: 127.0.0.1, port: ${admin} }
upstreams:
  - { name: vault, namespace: default, ports: [{ port: 80, targetPort: ${vault.port}, protocol: http }], endpoints: [${viaWest}] }
  - { name: payments, namespace: default, ports: [{ port: 80, targetPort: ${paymentsPort}, protocol: http }], endpoints: [${viaWest}] }
listeners:
  - { bindAddress: 127.0.0.1, localPort: ${vaultListen}, service: vault, namespace: default, port: 80 }
  - { bindAddress: 127.0.0.1, localPort: ${paymentsListen}, service: payments, namespace: default, port: 80 }
logLevel: warn
`);
    const caller = await spawnTrellis(['proxy', 'run', '--config', join(dir, 'proxy.yaml')]);
    // The exported one works for this very caller through the same ingress...
    const paid = await eventually(async () => {
      const r = await call(paymentsListen, '/by-hand');
      return r.status === 200 ? r : undefined;
    }, 'payments through the hand-made caller', 30_000);
    expect(paid.body).toBe('payments GET /by-hand\n');
    // ... the unexported one is refused at the ingress, typed, and never reaches vault.
    const refused = await call(vaultListen, '/secret');
    expect(refused.status).toBeGreaterThanOrEqual(500);
    expect(vault.hits()).toBe(0);
    const ingressMetrics = await getText(`http://127.0.0.1:${String(ingress.ready.admin)}`, '/metrics');
    expect(ingressMetrics).toMatch(/trellis_ingress_streams_total\{result="unknown-service",source_zone="east",destination="default\/vault"\} [1-9]/);
    const callerMetrics = await getText(`http://127.0.0.1:${admin}`, '/metrics');
    expect(callerMetrics).toMatch(/trellis_ingress_refusals_total\{zone="west",reason="unknown-service"\} [1-9]/);
    expect(caller.output()).toMatch(/zone ingress refused the stream/);
    expect(caller.output()).toMatch(/unknown-service/);
    await caller.stop();
  });

  it('the global stopped: cross-zone calls keep flowing on the catalogue each zone kept', async () => {
    await global.stop('SIGKILL');
    for (let i = 0; i < 5; i++) expect((await call(ports.payments, `/without-global-${i}`)).status).toBe(200);
  });

  it("west's ingress killed: payments cannot be reached; restarted: calls flow again", async () => {
    await ingress.stop('SIGKILL');
    await eventually(async () => {
      try {
        return (await call(ports.payments, '/', 'GET', 3_000)).status !== 200;
      } catch {
        return true;
      }
    }, 'payments unreachable without the ingress', 20_000);
    ingress = await startIngress();
    await eventually(async () => (await call(ports.payments, '/again')).status === 200 || undefined, 'payments again after the restart', 30_000);
  });
});
