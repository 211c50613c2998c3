import { describe, expect, it } from 'vitest';
import { MAX_FEDERATED_TRUST_DOMAINS } from '../../api/control-protocol.js';
import { silentLogger } from '../../common/log.js';
import { federatedBundles, FederationView } from '../../control/zone-sync/federated-bundles.js';
import { createTestPki } from '../helpers/pki.js';

const MESH = 'cluster.local';

describe('federated bundles from the global\'s trust records', () => {
  it('keys other trust domains\' roots by trust domain, merges zones of one trust domain, and skips our own', async () => {
    const [own, b1, b2, c] = await Promise.all([createTestPki(), createTestPki({ trustDomain: 'other.example' }), createTestPki({ trustDomain: 'other.example' }), createTestPki({ trustDomain: 'third.example' })]);
    const records: [string, unknown][] = [
      [`east/${MESH}`, { zone: 'east', trustDomain: MESH, rootsPem: own.bundlePem }],
      ['b-1/other.example', { zone: 'b-1', trustDomain: 'other.example', rootsPem: b1.bundlePem }],
      ['b-2/other.example', { zone: 'b-2', trustDomain: 'other.example', rootsPem: `${b2.bundlePem}\n${b1.bundlePem}` }],
      ['c/third.example', { zone: 'c', trustDomain: 'third.example', rootsPem: c.bundlePem }],
      ['junk/x', { zone: 'junk', trustDomain: 'x.example', rootsPem: 'not pem' }],
    ];
    const { bundles, dropped } = federatedBundles(records, MESH);
    expect(Object.keys(bundles)).toEqual(['other.example', 'third.example']);
    expect(bundles['other.example']?.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(bundles['other.example']).toContain(b1.bundlePem.trim());
    expect(bundles['other.example']).toContain(b2.bundlePem.trim());
    expect(bundles['third.example']?.trim()).toBe(c.bundlePem.trim());
    expect(dropped).toEqual([]);
  });

  it(`keeps at most ${MAX_FEDERATED_TRUST_DOMAINS} trust domains, first by name, and names the rest`, async () => {
    const pki = await createTestPki({ trustDomain: 'x.example' });
    const records: [string, unknown][] = Array.from({ length: MAX_FEDERATED_TRUST_DOMAINS + 2 }, (_, i) => [`z/td${String(i).padStart(3, '0')}.example`, { trustDomain: `td${String(i).padStart(3, '0')}.example`, rootsPem: pki.bundlePem }]);
    const { bundles, dropped } = federatedBundles(records, MESH);
    expect(Object.keys(bundles)).toHaveLength(MAX_FEDERATED_TRUST_DOMAINS);
    expect(dropped).toEqual([`td${MAX_FEDERATED_TRUST_DOMAINS}.example`, `td${MAX_FEDERATED_TRUST_DOMAINS + 1}.example`].map((n) => n.replace(/td(\d+)/, (_, d: string) => `td${d.padStart(3, '0')}`)));
  });

  it('a view reports a change only when the bundles change', async () => {
    const b = await createTestPki({ trustDomain: 'other.example' });
    const view = new FederationView(MESH, silentLogger());
    expect(view.refresh([])).toBe(false);
    const rec: [string, unknown] = ['b/other.example', { trustDomain: 'other.example', rootsPem: b.bundlePem }];
    expect(view.refresh([rec])).toBe(true);
    expect(view.refresh([rec])).toBe(false);
    expect(Object.keys(view.bundles)).toEqual(['other.example']);
    expect(view.refresh([])).toBe(true);
    expect(view.bundles).toEqual({});
  });
});

describe('federated bundles in the watch', () => {
  it('a snapshot carries them only when there are some, and a change reaches every stream as a delta of the whole set', async () => {
    const { ServiceRegistry } = await import('../../control/registry.js');
    const { WatchHub } = await import('../../control/watch-hub.js');
    const registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    let bundles: Readonly<Record<string, string>> = {};
    const hub = new WatchHub({ registry, trustDomain: MESH, rootNamespace: 'trellis-system', zone: 'z1', pingIntervalMs: 60_000, maxBufferedBytes: 100_000, trustBundlePem: () => 'PEM', policies: () => [], federatedBundles: () => bundles });
    try {
      const lines: string[] = [];
      const sink = { bufferedBytes: 0, write: (l: string) => void lines.push(l), close: () => undefined };
      hub.open({ instanceId: 'i1', service: 'web', namespace: 'shop', spiffeId: `spiffe://${MESH}/ns/shop/sa/web`, upstreams: [] }, sink);
      expect(JSON.parse(lines[0] as string).snapshot).not.toHaveProperty('federatedBundles');
      bundles = { 'other.example': 'ROOTS' };
      hub.federationChanged();
      expect(JSON.parse(lines[1] as string)).toMatchObject({ type: 'delta', federatedBundles: { 'other.example': 'ROOTS' } });
      const later: string[] = [];
      hub.open({ instanceId: 'i2', service: 'web', namespace: 'shop', spiffeId: `spiffe://${MESH}/ns/shop/sa/web`, upstreams: [] }, { bufferedBytes: 0, write: (l: string) => void later.push(l), close: () => undefined });
      expect(JSON.parse(later[0] as string).snapshot.federatedBundles).toEqual({ 'other.example': 'ROOTS' });
      bundles = {};
      hub.federationChanged();
      expect(JSON.parse(lines[2] as string).federatedBundles).toEqual({});
    } finally {
      hub.close();
      registry.close();
    }
  });
});
