/**
 * Registry pollution (hardening item 10), over real HTTPS on loopback: one agent certificate registered
 * 467 fake instances of its own service, which were persisted and pushed to every subscriber. Pinned here:
 * the per-workload and per-service caps, that only the registering workload (across its renewals) may
 * change an instance, that an instance whose agent's watch dropped goes after the lease (subscribers hear
 * it, the store forgets it), and that a restart keeps stored instances for a fresh lease, then drops the
 * unclaimed ones.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTROL_PATHS, type IssueResponse, type WatchDeltaMessage, type WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ControlError, controlRequest } from '../../api/control-client.js';
import { createCsr, generateWorkloadKey } from '../../ca/csr.js';
import type { ControlPlaneConfig } from '../../control/config.js';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';
import { allowAllPolicyDir, issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type IssuedTestIdentity, type TestControlPlane } from './support.js';

const ID = (svc: string): string => `spiffe://trellis.local/ns/shop/sa/${svc}`;
const open: TestWatch[] = [];
let t: TestControlPlane | undefined;

afterEach(async () => {
  for (const w of open.splice(0)) w.close();
  await t?.close();
  if (t !== undefined) removeDir(t.dir);
  t = undefined;
});

async function start(overrides: Partial<ControlPlaneConfig> = {}, dir?: string): Promise<TestControlPlane> {
  t = await startTestControlPlane(overrides, dir);
  return t;
}

async function identity(cp: TestControlPlane, service: string): Promise<IssuedTestIdentity> {
  const tokens = new TokenService(await FileStore.open(join(cp.dir, 'data')), 'trellis.local');
  const { token } = await tokens.create(service, 'shop', 60_000);
  return issueWithToken(cp.endpoint, token, ID(service));
}

async function watch(cp: TestControlPlane, cert: IssuedTestIdentity, ...args: Parameters<typeof registration>): Promise<TestWatch> {
  const w = await TestWatch.open(cp.endpoint, cert, registration(...args));
  open.push(w);
  return w;
}

/** The refusal's error code, from `TestWatch.open`'s message. */
async function refusedWith(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  if (err instanceof ControlError) return err.code;
  return /"code":"([A-Z_]+)"/.exec((err as Error).message)?.[1] ?? (err as Error).message;
}

const storedIds = (cp: TestControlPlane): string[] => readdirSync(join(cp.dir, 'data', 'registrations')).map((f) => f.replace(/\.json$/, '')).sort();

describe('registry pollution: caps', () => {
  it('refuses one certificate\'s 467 registrations beyond its cap: nothing beyond it is stored or reaches subscribers', async () => {
    const cp = await start({ instanceLimits: { perWorkload: 8, perService: 256 } });
    const attacker = await identity(cp, 'orders');
    const subscriber = await watch(cp, await identity(cp, 'frontend'), 'fe-1', 21000, { upstreams: [{ service: 'orders', namespace: 'shop' }] });
    const codes: string[] = [];
    // In bursts, as an attacker would: the cap is checked and taken in one turn, so racing requests cannot all pass it.
    for (let i = 0; i < 467; i += 40) {
      const burst = Array.from({ length: Math.min(40, 467 - i) }, (_, j) => i + j);
      const results = await Promise.allSettled(burst.map((n) => watch(cp, attacker, `fake-${n}`, 30000 + n)));
      for (const r of results) if (r.status === 'rejected') codes.push(/"code":"([A-Z_]+)"/.exec(String(r.reason))?.[1] ?? String(r.reason));
    }
    expect(codes).toHaveLength(467 - 8);
    expect(new Set(codes)).toEqual(new Set(['TRELLIS_CONTROL_INSTANCE_LIMIT']));
    expect(cp.cp.registry.instanceCount('shop', 'orders')).toBe(8);
    expect(storedIds(cp).filter((id) => id.startsWith('fake-'))).toHaveLength(8);
    // The subscriber saw at most the eight, in every message it got.
    await subscriber.next((m) => m.type === 'delta' && (m.upstreams?.[0]?.endpoints.length ?? 0) + (m.endpoints?.length ?? 0) > 0);
    await new Promise((r) => setTimeout(r, 50));
    const seen = new Set<string>();
    for (const m of subscriber.messages) {
      if (m.type === 'delta') {
        for (const u of m.upstreams ?? []) for (const e of u.endpoints) seen.add(`${e.tunnelPort}`);
        for (const c of m.endpoints ?? []) if (c.set !== undefined) seen.add(`${c.set.tunnelPort}`);
      }
    }
    expect(seen.size).toBe(8);
    const metrics = await cp.cp.metrics.getSingleMetricAsString('trellis_control_registrations_refused_total');
    expect(metrics).toContain('code="TRELLIS_CONTROL_INSTANCE_LIMIT"} 459');
    // 467 mutual-TLS handshakes: about 15 s on an idle machine, more on a shared one.
  }, 120_000);

  it('caps a service identity across its workloads, and lets a workload re-register its instances at no cost', async () => {
    const cp = await start({ instanceLimits: { perWorkload: 3, perService: 4 } });
    const a = await identity(cp, 'orders');
    const b = await identity(cp, 'orders');
    for (const n of [1, 2, 3]) await watch(cp, a, `a-${n}`, 31000 + n);
    expect(await refusedWith(watch(cp, a, 'a-4', 31004))).toBe('TRELLIS_CONTROL_INSTANCE_LIMIT');
    await watch(cp, b, 'b-1', 32001);
    expect(await refusedWith(watch(cp, b, 'b-2', 32002))).toBe('TRELLIS_CONTROL_SERVICE_INSTANCE_LIMIT');
    // A re-registration by the same workload (its agent reconnecting) replaces its instance.
    await watch(cp, a, 'a-1', 31001);
    expect(cp.cp.registry.instanceCount('shop', 'orders')).toBe(4);
  });
});

describe('registry pollution: ownership', () => {
  it('lets only the registering workload re-register, report for or delete its instance; its renewed certificate keeps it', async () => {
    const cp = await start();
    const owner = await identity(cp, 'orders');
    const other = await identity(cp, 'orders');
    const first = await watch(cp, owner, 'or-1', 33001);
    await first.next((m) => m.type === 'snapshot');

    const put = (cert: IssuedTestIdentity) => controlRequest(cp.endpoint, { method: 'PUT', path: CONTROL_PATHS.endpoint('or-1'), body: { healthy: false }, clientCert: cert });
    const del = (cert: IssuedTestIdentity) => controlRequest(cp.endpoint, { method: 'DELETE', path: CONTROL_PATHS.endpoint('or-1'), clientCert: cert });
    expect(await refusedWith(del(other))).toBe('TRELLIS_CONTROL_INSTANCE_TAKEN');
    expect(await refusedWith(put(other))).toBe('TRELLIS_CONTROL_INSTANCE_TAKEN');
    expect(await refusedWith(watch(cp, other, 'or-1', 33009))).toBe('TRELLIS_CONTROL_INSTANCE_TAKEN');
    // Nor may it push the live owner out of its address under an id of its own.
    expect(await refusedWith(watch(cp, other, 'or-evil', 33001))).toBe('TRELLIS_CONTROL_ADDRESS_TAKEN');
    expect(cp.cp.registry.get('or-1')).toMatchObject({ tunnelPort: 33001, healthy: true, owner: { serial: owner.issued.serial.replace(/^0+/, '') } });
    expect(cp.cp.registry.get('or-evil')).toBeUndefined();

    // The owner renews (a new key and serial) and reconnects with the new certificate: still its instance.
    const key = await generateWorkloadKey();
    const renewed = await controlRequest<IssueResponse>(cp.endpoint, { method: 'POST', path: CONTROL_PATHS.renew, body: { csrPem: await createCsr(key, ID('orders')) }, clientCert: owner });
    const next: IssuedTestIdentity = { issued: renewed, certChainPem: renewed.certChainPem, keyPem: key.keyPem };
    await watch(cp, next, 'or-1', 33001);
    await put(next);
    expect(cp.cp.registry.get('or-1')?.healthy).toBe(false);
    await del(next);
    expect(cp.cp.registry.get('or-1')).toBeUndefined();
    expect(storedIds(cp)).not.toContain('or-1');
  });
});

describe('registry pollution: leases', () => {
  it('removes an instance whose agent\'s watch dropped once the lease ends, tells subscribers, and forgets it on disk', async () => {
    // A wildcard subscriber is told only of what policy lets it call: let it call everything.
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'));
    const cp = await start({ disconnectGraceMs: 50, instanceLeaseMs: 400, policyDir: allowAllPolicyDir(dir) }, dir);
    const subscriber = await watch(cp, await identity(cp, 'frontend'), 'fe-1', 21000, { upstreams: [{ service: '*', namespace: 'shop' }] });
    const orders = await watch(cp, await identity(cp, 'orders'), 'or-1', 34001);
    await subscriber.next((m) => m.type === 'delta' && (m.upstreams ?? []).some((u) => u.name === 'orders'));
    expect(storedIds(cp)).toContain('or-1');
    orders.close();
    const removal = (await subscriber.next((m) => m.type === 'delta' && (m.removedUpstreams ?? []).some((u) => u.service === 'orders'), 3_000)) as WatchDeltaMessage;
    expect(removal.removedUpstreams).toEqual([{ service: 'orders', namespace: 'shop' }]);
    expect(cp.cp.registry.get('or-1')).toBeUndefined();
    await expect.poll(() => storedIds(cp)).not.toContain('or-1');
  });

  it('keeps stored instances through a restart for a fresh lease, then drops those no agent reclaimed', async () => {
    const first = await start({ instanceLeaseMs: 60_000 });
    const dir = first.dir;
    const orders = await identity(first, 'orders');
    const gone = await identity(first, 'orders');
    await watch(first, orders, 'or-back', 35001);
    await watch(first, gone, 'or-gone', 35002);
    for (const w of open.splice(0)) w.close();
    await first.close();
    t = undefined;

    // Restarted with a short lease: both instances are there at once, healthy as stored.
    const cp = await start({ startupGraceMs: 300, instanceLeaseMs: 600, disconnectGraceMs: 50 }, dir);
    expect(cp.cp.registry.entries().map((e) => `${e.instanceId}:${e.healthy}`).sort()).toEqual(['or-back:true', 'or-gone:true']);
    const subscriber = await watch(cp, await identity(cp, 'frontend'), 'fe-1', 21000, { upstreams: [{ service: 'orders', namespace: 'shop' }] });
    const snapshot = (await subscriber.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
    expect(snapshot.snapshot.upstreams[0]?.endpoints.map((e) => e.tunnelPort).sort()).toEqual([35001, 35002]);
    // One agent comes back with its (still valid) certificate and reclaims its instance.
    await watch(cp, orders, 'or-back', 35001);
    const removed = (await subscriber.next((m) => m.type === 'delta' && (m.endpoints ?? []).some((c) => c.remove === '127.0.0.1:35002'), 3_000)) as WatchDeltaMessage;
    expect(removed.version).toBeGreaterThan(snapshot.version);
    expect(cp.cp.registry.entries().map((e) => e.instanceId).sort()).toEqual(['fe-1', 'or-back']);
    await expect.poll(() => storedIds(cp)).toEqual(['fe-1', 'or-back']);
  });
});
