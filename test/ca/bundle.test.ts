import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type Server } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createRootCa } from '../../ca/authority.js';
import { TrustBundle } from '../../ca/bundle.js';
import { fingerprintSha256 } from '../../ca/certificate.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { verifyChain } from '../../ca/verify.js';

const ID = parseSpiffeId('spiffe://example.org/ns/shop/sa/cart');

describe('trust bundles', () => {
  it('round-trips PEM and the SPIFFE bundle JSON (x509-svid keys, spiffe_sequence)', async () => {
    const a = await createRootCa({ trustDomain: 'example.org' });
    const b = await createRootCa({ trustDomain: 'example.org', curve: 'P-384' });
    const bundle = a.bundle.withRoot(b.certificatePem);
    expect(bundle.roots).toHaveLength(2);
    expect(bundle.sequence).toBe(a.bundle.sequence + 1);
    expect(TrustBundle.fromPem('example.org', bundle.toPem()).toPem()).toBe(bundle.toPem());
    const doc = bundle.toSpiffeJson(300);
    expect(doc.spiffe_sequence).toBe(bundle.sequence);
    expect(doc.spiffe_refresh_hint).toBe(300);
    expect(doc.keys.map((k) => [k.use, k.kty, k['crv']])).toEqual([
      ['x509-svid', 'EC', 'P-256'],
      ['x509-svid', 'EC', 'P-384'],
    ]);
    const back = TrustBundle.fromSpiffeJson('example.org', JSON.stringify(doc));
    expect(back.toPem()).toBe(bundle.toPem());
    expect(back.sequence).toBe(bundle.sequence);
  });

  it('ignores keys of other uses (jwt-svid) and refuses malformed documents', () => {
    expect(() => TrustBundle.fromSpiffeJson('example.org', '{')).toThrow(/not JSON/);
    expect(() => TrustBundle.fromSpiffeJson('example.org', { keys: 'x' })).toThrow(/"keys" array/);
    expect(() => TrustBundle.fromSpiffeJson('example.org', { keys: [{ use: 'x509-svid', x5c: [] }] })).toThrow(/exactly one x5c/);
    expect(() => TrustBundle.fromSpiffeJson('example.org', { keys: [{ use: 'jwt-svid', kty: 'EC' }] })).toThrow(/holds no root/);
  });

  it('accepts only updates whose sequence grows', async () => {
    const a = await createRootCa({ trustDomain: 'example.org' });
    const b = await createRootCa({ trustDomain: 'example.org' });
    const v2 = a.bundle.withRoot(b.certificatePem);
    expect(TrustBundle.accept(a.bundle, v2)).toBe(v2);
    expect(() => TrustBundle.accept(v2, a.bundle)).toThrow(expect.objectContaining({ code: 'TRELLIS_BUNDLE_STALE' }));
    expect(() => TrustBundle.accept(v2, v2)).toThrow(/not newer/);
    const other = await createRootCa({ trustDomain: 'other.org' });
    expect(() => TrustBundle.accept(v2, TrustBundle.fromPem('other.org', other.certificatePem, 99))).toThrow(expect.objectContaining({ code: 'TRELLIS_BUNDLE_TRUST_DOMAIN' }));
  });

  it('refuses a leaf as a root, an empty bundle, removing the last root', async () => {
    const a = await createRootCa({ trustDomain: 'example.org' });
    const leaf = await a.issueWorkload(ID);
    expect(() => TrustBundle.fromPem('example.org', leaf.certChainPem)).toThrow(expect.objectContaining({ code: 'TRELLIS_BUNDLE_NOT_CA' }));
    expect(() => a.bundle.withoutRoot(fingerprintSha256(a.certificate.der))).toThrow(/last root/);
    expect(() => a.bundle.withoutRoot('00:11')).toThrow(/no root with fingerprint/);
  });
});

describe('root rotation with no failed request', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  async function mtls(server: { certChainPem: string; keyPem: string }, serverCa: string, client: { certChainPem: string; keyPem: string }, clientCa: string): Promise<boolean> {
    const srv = createServer({ cert: server.certChainPem, key: server.keyPem, ca: serverCa, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (s) => s.end('ok'));
    srv.on('tlsClientError', () => undefined);
    servers.push(srv);
    const port = await new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as AddressInfo).port)));
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port, cert: client.certChainPem, key: client.keyPem, ca: clientCa, checkServerIdentity: () => undefined });
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(got === 'ok'));
    });
  }

  it('add the new root, switch signing, remove the old root', async () => {
    const oldRoot = await createRootCa({ trustDomain: 'example.org' });
    const oldZone = await oldRoot.createIntermediate({ name: 'zone-a' });
    const oldLeaf = await oldZone.issueWorkload(ID);

    // 1. Every peer learns the new root alongside the old.
    const newRoot = await createRootCa({ trustDomain: 'example.org' });
    const both = oldRoot.bundle.withRoot(newRoot.certificate);
    // 2. Signing switches to an intermediate under the new root, handing out the two-root bundle.
    const newZone = (await newRoot.createIntermediate({ name: 'zone-a' })).withBundle(both);
    const newLeaf = await newZone.issueWorkload(ID);
    expect(newLeaf.trustBundlePem).toBe(both.toPem());
    // Old and new certificates interoperate in both directions while both roots are trusted.
    expect(await mtls(oldLeaf, both.toPem(), newLeaf, both.toPem())).toBe(true);
    expect(await mtls(newLeaf, both.toPem(), oldLeaf, both.toPem())).toBe(true);
    // A peer that has not yet learned the new root would refuse the new leaf: why step 1 comes first.
    expect(await mtls(oldLeaf, oldRoot.bundle.toPem(), newLeaf, both.toPem())).toBe(false);
    // 3. Once old leaves have expired, the old root goes; the sequence keeps growing.
    const after = both.withoutRoot(fingerprintSha256(oldRoot.certificate.der));
    expect(after.sequence).toBe(both.sequence + 1);
    expect(verifyChain(newLeaf.certChainPem, after).identity.spiffeId).toBe(ID.toString());
    expect(() => verifyChain(oldLeaf.certChainPem, after)).toThrow(expect.objectContaining({ code: 'TRELLIS_CHAIN_UNTRUSTED' }));
  });
});
