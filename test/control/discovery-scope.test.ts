/**
 * Discovery scoped by policy (hardening item 10): a wildcard subscriber learns only the services its
 * identity could be allowed to call. In the hub without sockets (what `couldAllow` counts: allow rules
 * with HTTP conditions, guardrail denies, dry-run denies; deltas and policy changes), then through the
 * real control plane over HTTPS with a policy directory that changes under it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import type { UpstreamRef, WatchDeltaMessage, WatchMessage, WatchSnapshotMessage } from '../../api/control-protocol.js';
import { FileStore } from '../../control/file-store.js';
import { ServiceRegistry } from '../../control/registry.js';
import type { StoredRegistration } from '../../control/store.js';
import { TokenService } from '../../control/token-service.js';
import { WatchHub, type WatchSink } from '../../control/watch-hub.js';
import type { PolicyRule, TrafficPermission } from '../../policy/types.js';
import { issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type TestControlPlane } from './support.js';

class Sink implements WatchSink {
  lines: string[] = [];
  bufferedBytes = 0;
  write(line: string): void {
    this.lines.push(line);
  }
  close(): void {}
  messages(): WatchMessage[] {
    return this.lines.map((l) => JSON.parse(l) as WatchMessage);
  }
  deltas(): WatchDeltaMessage[] {
    return this.messages().filter((m): m is WatchDeltaMessage => m.type === 'delta');
  }
}

const reg = (id: string, service: string, port: number): StoredRegistration => ({
  instanceId: id, service, namespace: 'shop', zone: 'z1', address: '10.0.0.1', tunnelPort: port,
  ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: '',
});
const permission = (namespace: string, name: string, destination: string, rules: PolicyRule[], mode: 'enforce' | 'dry-run' = 'enforce'): TrafficPermission => ({
  apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace }, spec: { destination, mode, rules },
});
const names = (upstreams: readonly { name: string }[] | undefined): string[] => (upstreams ?? []).map((u) => u.name).sort();

describe('WatchHub with discovery scoped by policy', () => {
  let registry: ServiceRegistry;
  let hub: WatchHub;
  let policies: TrafficPermission[];
  beforeEach(() => {
    registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    policies = [
      // frontend may POST to orders only: still a service it may call.
      permission('shop', 'orders', 'orders', [{ action: 'allow', from: ['frontend'], http: { methods: ['POST'] } }]),
      // Everyone may call payments, but a mesh-wide guardrail refuses frontend everything there.
      permission('shop', 'payments', 'payments', [{ action: 'allow', from: ['*'] }]),
      permission('trellis-system', 'guardrail', 'shop/payments', [{ action: 'deny', from: ['shop/frontend'] }]),
      // A dry-run deny on reports is not enforced: reports stays reachable.
      permission('shop', 'reports', 'reports', [{ action: 'allow', from: ['shop/*'] }]),
      permission('shop', 'reports-audit', 'reports', [{ action: 'deny', from: ['frontend'] }], 'dry-run'),
      // billing: no rule names frontend.
      permission('shop', 'billing', 'billing', [{ action: 'allow', from: ['orders'] }]),
    ];
    hub = new WatchHub({ registry, trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1', pingIntervalMs: 60_000, maxBufferedBytes: 1 << 20, trustBundlePem: () => 'PEM', policies: () => policies, scopeDiscovery: true });
    for (const [i, svc] of ['orders', 'payments', 'reports', 'billing'].entries()) registry.connect(reg(`${svc}-1`, svc, i + 1));
  });
  afterEach(() => {
    hub.close();
    registry.close();
  });

  function open(upstreams: readonly UpstreamRef[]): Sink {
    const sink = new Sink();
    hub.open({ instanceId: 'fe-1', service: 'frontend', namespace: 'shop', spiffeId: 'spiffe://example.org/ns/shop/sa/frontend', upstreams }, sink);
    return sink;
  }

  it('gives a wildcard subscriber only what policy could let it call, and no deltas of the rest', async () => {
    const mesh = open([{ service: '*', namespace: '*' }]);
    const shop = open([{ service: '*', namespace: 'shop' }]);
    for (const sink of [mesh, shop]) expect(names((sink.messages()[0] as WatchSnapshotMessage).snapshot.upstreams)).toEqual(['orders', 'reports']);
    registry.connect(reg('billing-2', 'billing', 12));
    registry.connect(reg('payments-2', 'payments', 11));
    registry.connect(reg('orders-2', 'orders', 10));
    await tick();
    for (const sink of [mesh, shop]) expect(sink.deltas().flatMap((d) => (d.endpoints ?? []).map((e) => e.service))).toEqual(['orders']);
    // A service that joins the mesh reaches it only when it may call it.
    registry.connect({ ...reg('vault-1', 'vault', 20) });
    await tick();
    expect(mesh.deltas().some((d) => names(d.upstreams).includes('vault'))).toBe(false);
  });

  it('sends what a policy change opens as whole upstreams, and what it closes as removals, with the new policies', () => {
    const sink = open([{ service: '*', namespace: '*' }]);
    // orders loses its only rule for frontend; billing gains one.
    policies = policies.filter((p) => p.metadata.name !== 'orders' && p.metadata.name !== 'billing');
    policies.push(permission('shop', 'billing', 'billing', [{ action: 'allow', from: ['orders', 'frontend'] }]));
    hub.policyChanged();
    const [delta] = sink.deltas();
    expect(names(delta?.upstreams)).toEqual(['billing']);
    expect(delta?.upstreams?.[0]?.endpoints.map((e) => e.tunnelPort)).toEqual([4]);
    expect(delta?.removedUpstreams).toEqual([{ service: 'orders', namespace: 'shop' }]);
    expect(delta?.policies?.map((p) => p.metadata.name)).toContain('billing');
  });

  it('leaves services an agent names as they were (not scoped)', () => {
    const sink = open([{ service: 'billing', namespace: 'shop' }]);
    expect((sink.messages()[0] as WatchSnapshotMessage).snapshot.upstreams[0]?.endpoints.map((e) => e.tunnelPort)).toEqual([4]);
  });
});

describe('discovery scoped by policy, through the control plane', () => {
  let t: TestControlPlane | undefined;
  afterEach(async () => {
    await t?.close();
    if (t !== undefined) removeDir(t.dir);
  });

  it('keeps a forbidden service out of a wildcard subscriber\'s config until a policy change allows it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-cp-'));
    const policyDir = join(dir, 'policy');
    mkdirSync(policyDir);
    const policyFile = (callers: string): string => `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [${callers}]
`;
    writeFileSync(join(policyDir, 'payments.yaml'), policyFile('orders'));
    const cp = await startTestControlPlane({ policyDir }, dir);
    t = cp;
    const tokens = new TokenService(await FileStore.open(join(dir, 'data')), 'trellis.local');
    const cert = async (svc: string) => issueWithToken(cp.endpoint, (await tokens.create(svc, 'shop', 60_000)).token, `spiffe://trellis.local/ns/shop/sa/${svc}`);
    const payments = await TestWatch.open(cp.endpoint, await cert('payments'), registration('pay-1', 36001));
    const frontend = await TestWatch.open(cp.endpoint, await cert('frontend'), registration('fe-1', 36002, { upstreams: [{ service: '*', namespace: 'shop' }] }));
    try {
      const { snapshot } = (await frontend.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
      expect(snapshot.upstreams.map((u) => u.name)).not.toContain('payments');

      writeFileSync(join(policyDir, 'payments.yaml'), policyFile('orders, frontend'));
      const opened = (await frontend.next((m) => m.type === 'delta' && (m.upstreams ?? []).some((u) => u.name === 'payments'), 8_000)) as WatchDeltaMessage;
      expect(opened.upstreams?.find((u) => u.name === 'payments')?.endpoints.map((e) => e.tunnelPort)).toEqual([36001]);
      // Before that, no message named it.
      const before = frontend.messages.slice(0, frontend.messages.indexOf(opened));
      expect(JSON.stringify(before.filter((m) => m.type === 'delta'))).not.toContain('36001');
    } finally {
      payments.close();
      frontend.close();
    }
  });
});
