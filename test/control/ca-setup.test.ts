/**
 * The control plane's CAs: made on first start and reused after, or the operator's from `--ca-dir`
 * (a root gets a zone intermediate below it; a plug-in CA that may not sign CAs signs workloads itself);
 * a CA of another trust domain is refused; a damaged key file is named.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa } from '../../ca/authority.js';
import { setUpZoneCas } from '../../control/ca-setup.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-ca-setup-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('setUpZoneCas', () => {
  it('makes a root and a zone intermediate once, then reuses them', async () => {
    const first = await setUpZoneCas({ dataDir: dir, caDir: undefined, trustDomain: 'example.org', zone: 'eu' });
    expect(first.zone.isRoot).toBe(false);
    expect(first.zone.certificate.basicConstraints?.pathLen).toBe(0);
    expect(readFileSync(join(dir, 'trust-bundle.pem'), 'utf8')).toBe(first.trustBundlePem);
    const again = await setUpZoneCas({ dataDir: dir, caDir: undefined, trustDomain: 'example.org', zone: 'eu' });
    expect(again.zone.certChainPem).toBe(first.zone.certChainPem);
    expect(again.trustBundlePem).toBe(first.trustBundlePem);
  });

  it('puts a zone intermediate under the operator\'s root, and refuses another trust domain', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    await root.save(join(dir, 'operator'));
    const cas = await setUpZoneCas({ dataDir: join(dir, 'data'), caDir: join(dir, 'operator'), trustDomain: 'example.org', zone: 'eu' });
    expect(cas.trustBundlePem).toBe(root.bundle.toPem());
    expect(cas.zone.certificate.issuerName.equals(root.certificate.subjectName)).toBe(true);
    await expect(setUpZoneCas({ dataDir: join(dir, 'data2'), caDir: join(dir, 'operator'), trustDomain: 'other.org', zone: 'eu' })).rejects.toThrow(/trust domain "example.org", this control plane serves "other.org"/);
  });

  it('retires the zone intermediate when the operator switched to a CA under a new root (rotation step 2)', async () => {
    const oldRoot = await createRootCa({ trustDomain: 'example.org', commonName: 'old root' });
    const newRoot = await createRootCa({ trustDomain: 'example.org', commonName: 'new root' });
    await oldRoot.save(join(dir, 'operator-old'));
    const before = await setUpZoneCas({ dataDir: join(dir, 'data'), caDir: join(dir, 'operator-old'), trustDomain: 'example.org', zone: 'eu' });
    await newRoot.save(join(dir, 'operator-new'));
    writeFileSync(join(dir, 'operator-new', 'bundle.pem'), oldRoot.bundle.toPem() + newRoot.bundle.toPem());
    const after = await setUpZoneCas({ dataDir: join(dir, 'data'), caDir: join(dir, 'operator-new'), trustDomain: 'example.org', zone: 'eu' });
    expect(after.zone.certificate.issuerName.equals(newRoot.certificate.subjectName)).toBe(true);
    expect(after.trustBundlePem).toBe(oldRoot.bundle.toPem() + newRoot.bundle.toPem());
    expect(after.retiredZoneCert).toMatch(/zone-eu\.pem\.retired-\d+$/);
    expect(readFileSync(after.retiredZoneCert as string, 'utf8')).toBe(before.zone.certChainPem);
    // Kept from then on.
    const again = await setUpZoneCas({ dataDir: join(dir, 'data'), caDir: join(dir, 'operator-new'), trustDomain: 'example.org', zone: 'eu' });
    expect(again.retiredZoneCert).toBeUndefined();
    expect(again.zone.certChainPem).toBe(after.zone.certChainPem);
  });

  it('lets a plug-in CA that may not sign CAs sign workloads itself', async () => {
    const root = await createRootCa({ trustDomain: 'example.org' });
    const plugIn = await root.createIntermediate({ name: 'corp issuing CA' });
    await plugIn.save(join(dir, 'operator'));
    const cas = await setUpZoneCas({ dataDir: join(dir, 'data'), caDir: join(dir, 'operator'), trustDomain: 'example.org', zone: 'eu' });
    expect(cas.zone.certChainPem).toBe(plugIn.certChainPem);
  });

  it('names a damaged CA file', async () => {
    await setUpZoneCas({ dataDir: dir, caDir: undefined, trustDomain: 'example.org', zone: 'eu' });
    writeFileSync(join(dir, 'ca', 'zone-eu.key'), 'not a key');
    await expect(setUpZoneCas({ dataDir: dir, caDir: undefined, trustDomain: 'example.org', zone: 'eu' })).rejects.toThrow(/zone-eu\.pem \(with .*zone-eu\.key\) is damaged/);
  });
});
