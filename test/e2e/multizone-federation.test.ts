/**
 * Federation across zones with different roots, as real processes on loopback: a global control plane,
 * zone `west` signing with an intermediate under the mesh root (trust domain trellis.local), and zone `far`
 * with its own PKI (trust domain other.example, `--ca-dir`). Far's roots travel through the global to west,
 * whose agents trust them as a federated bundle; a caller of other.example (a static `trellis proxy run`
 * with a certificate from far's CA, dialling west's `orders` sidecar) is refused while only `from:
 * [frontend]` (this mesh's frontend) is allowed, and admitted once a policy names its trust domain.
 *
 * Then far's own frontend (an agent of far's control plane) calls west's `orders` through west's zone
 * ingress, with nothing configured by hand: far's mesh view says the endpoint is of trellis.local, so the
 * caller verifies the ingress and orders against west's roots (learnt as a trust record), names its own
 * trust domain to the ingress, which verifies it against far's roots alone, and orders authorizes far's
 * frontend by its own SPIFFE ID.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { allow, app, call, cleanup, eventually, freePort, requireBuild, spawnTrellis, startMesh, tempDir, trellis, type Mesh, type Proc } from './mesh-support.js';
import { startIngress } from './zone-support.js';

async function getJson<T>(base: string, path: string): Promise<T> {
  return (await fetch(new URL(path, base))).json() as Promise<T>;
}

let globalDir: string;
let globalPort: number;
let west: Mesh;
let far: Mesh;
let caller: Proc;
let farCa: string;

async function joinZone(zone: string, extra: readonly string[] = []): Promise<Mesh> {
  const tokenFile = join(globalDir, `${zone}.token`);
  const made = await trellis(['zone', 'token', 'create', '--zone', zone, '--data-dir', globalDir, '--output', tokenFile]);
  expect(made.code, made.stderr).toBe(0);
  return startMesh({ 'orders.yaml': allow('orders', ['frontend']) }, ['--zone', zone, '--global', `https://127.0.0.1:${globalPort}`, '--global-ca', join(globalDir, 'trust-bundle.pem'), '--global-token-file', tokenFile, ...extra]);
}

beforeAll(async () => {
  requireBuild();
  globalDir = tempDir('trellis-global-fed-');
  globalPort = await freePort();
  await spawnTrellis(['control', 'run', '--mode', 'global', '--data-dir', globalDir, '--listen', `127.0.0.1:${globalPort}`, '--admin', '127.0.0.1:0', '--log-level', 'warn'], 60_000);
  // Far's own PKI: a root of another trust domain, made by the operator.
  farCa = join(tempDir('trellis-far-ca-'), 'ca');
  const init = await trellis(['ca', 'init', '--dir', farCa, '--trust-domain', 'other.example']);
  expect(init.code, init.stderr).toBe(0);
  [west, far] = await Promise.all([joinZone('west'), joinZone('far', ['--trust-domain', 'other.example', '--ca-dir', farCa])]);
}, 90_000);

afterAll(cleanup);

describe('a zone with a different root federates', () => {
  it('admits its caller only once a policy names its trust domain', { timeout: 90_000 }, async () => {
    const orders = await app('orders');
    const ordersAgent = await west.agent({ service: 'orders', appPort: orders.port, protocol: 'tcp' });
    const agentAdmin = `http://127.0.0.1:${String(ordersAgent.ready.admin)}`;
    const registry = await eventually(async () => {
      const r = await getJson<{ endpoints: { service: string; tunnelPort: number; healthy: boolean }[] }>(west.control.ready.admin as string, '/registry');
      return r.endpoints.find((e) => e.service === 'orders' && e.healthy);
    }, 'west registers orders');
    // Far's roots reach west through the global as a trust record (federation).
    await eventually(async () => {
      const view = await getJson<{ trust: [string, unknown][] }>(west.control.ready.admin as string, '/global/catalogue');
      return view.trust.some(([key]) => key === 'far/other.example');
    }, "far's trust record reaches west", 30_000);
    // ... and west's agent holds them (the snapshot's federated bundles), so what follows is policy, not TLS.
    await eventually(async () => {
      const config = await getJson<{ snapshot?: { federatedBundles?: Record<string, string> } }>(agentAdmin, '/config');
      return config.snapshot?.federatedBundles?.['other.example'] !== undefined;
    }, "west's orders agent federates with other.example", 30_000);

    // The caller: frontend of other.example, its certificate from far's CA, trusting west's roots for orders.
    const dir = tempDir('trellis-far-caller-');
    const issued = await trellis(['ca', 'issue', '--dir', farCa, '--spiffe-id', 'spiffe://other.example/ns/default/sa/frontend', '--out', join(dir, 'frontend')]);
    expect(issued.code, issued.stderr).toBe(0);
    const listenPort = await freePort();
    writeFileSync(
      join(dir, 'proxy.yaml'),
      `service: frontend
namespace: default
trustDomain: other.example
zone: far
identity:
  certificate: frontend.crt
  key: frontend.key
  trustBundle: ${join(farCa, 'bundle.pem')}
  federatedBundles:
    trellis.local: ${join(west.dataDir, 'trust-bundle.pem')}
tunnel: { address: 127.0.0.1, port: 0 }
admin: { enabled: false }
upstreams:
  - name: orders
    namespace: default
    ports: [{ port: 80, targetPort: ${orders.port}, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, tunnelPort: ${registry.tunnelPort}, zone: west, trustDomain: trellis.local }]
listeners:
  - { bindAddress: 127.0.0.1, localPort: ${listenPort}, service: orders, namespace: default, port: 80 }
logLevel: warn
`,
    );
    caller = await spawnTrellis(['proxy', 'run', '--config', join(dir, 'proxy.yaml')]);
    expect(caller.ready.listeners).toEqual([expect.objectContaining({ localPort: listenPort })]);

    // `from: [frontend]` means this mesh's frontend: the federated one passes TLS and is refused by policy.
    await expect(call(listenPort, '/', 'GET', 3_000)).rejects.toThrow();
    expect(orders.hits()).toBe(0);
    const metrics = await (await fetch(new URL('/metrics', agentAdmin))).text();
    expect(metrics).toMatch(/trellis_policy_denials_total\{source="default\/frontend",source_zone="unknown",destination="default\/orders",policy="default-deny"[^}]*\} 1/);

    west.setPolicy('orders.yaml', allow('orders', ['frontend', '"spiffe://other.example/ns/default/sa/frontend"']));
    const answer = await eventually(async () => {
      try {
        return await call(listenPort, '/federated', 'GET', 3_000);
      } catch {
        return undefined;
      }
    }, 'the federated caller is admitted once a policy names it', 30_000);
    expect(answer).toMatchObject({ status: 200, body: 'orders GET /federated\n' });
    expect(far.control.ready.admin).toBeDefined();
  });

  it("far's own agent calls west's orders through west's ingress: each side verified against its own trust domain's roots", { timeout: 90_000 }, async () => {
    west.setPolicy('orders.yaml', allow('orders', ['frontend', '"spiffe://other.example/ns/default/sa/frontend"']));
    const ingressPort = await freePort();
    const ingress = await startIngress(west, ingressPort);
    const ordersPort = await freePort();
    const frontend = await far.agent({ service: 'frontend', appPort: await freePort(), protocol: 'http', upstreams: [`orders=${ordersPort}`] });
    const frontendAdmin = `http://127.0.0.1:${String(frontend.ready.admin)}`;
    // West's orders reaches far's agent via west's ingress, marked with west's trust domain.
    await eventually(async () => {
      const config = await getJson<{ snapshot?: { upstreams: { name: string; endpoints: { zone: string; trustDomain?: string; ingress?: unknown }[] }[]; federatedBundles?: Record<string, string> } }>(frontendAdmin, '/config');
      const endpoint = config.snapshot?.upstreams.find((u) => u.name === 'orders')?.endpoints.find((e) => e.zone === 'west');
      return endpoint?.trustDomain === 'trellis.local' && endpoint.ingress !== undefined && config.snapshot?.federatedBundles?.['trellis.local'] !== undefined;
    }, "west's orders via west's ingress, of trellis.local, in far's frontend", 30_000);
    const answer = await eventually(async () => {
      try {
        const r = await call(ordersPort, '/via-ingress', 'GET', 3_000);
        return r.status === 200 ? r : undefined;
      } catch {
        return undefined;
      }
    }, "far's frontend reaches west's orders through west's ingress", 30_000);
    expect(answer.body).toBe('orders GET /via-ingress\n');
    const ingressMetrics = await (await fetch(new URL('/metrics', `http://127.0.0.1:${String(ingress.ready.admin)}`))).text();
    expect(ingressMetrics).toMatch(/trellis_ingress_streams_total\{result="ok",source_zone="[a-z]+",destination="default\/orders"\} [1-9]/);
  });
});
