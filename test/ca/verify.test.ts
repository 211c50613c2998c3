import { beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { certificatePem, parseCertificatesPem } from '../../ca/certificate.js';
import { createRootCa } from '../../ca/authority.js';
import { importPrivateKeyPem, signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { caTemplate, encodeName, keyIdentifier, leafProfile, leafTemplate, signCertificate } from '../../ca/profile.js';
import { generateWorkloadKey } from '../../ca/csr.js';
import { verifyChain, verifyPeerCertificate } from '../../ca/verify.js';
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import type { TrellisError } from '../../common/errors.js';

const HOUR = 3_600_000;

function refusal(work: () => unknown): TrellisError {
  try {
    work();
  } catch (err) {
    return err as TrellisError;
  }
  throw new Error('expected a refusal');
}

function leafOf(chainPem: string): X509Certificate {
  return new X509Certificate(chainPem.slice(0, chainPem.indexOf('-----END CERTIFICATE-----') + 25));
}

describe('verifyPeerCertificate (the leaf checks the proxy runs on every handshake)', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await createTestPki({ trustDomain: 'mesh.test' });
  });

  it('returns the workload identity', async () => {
    const issued = await pki.issue('cart', 'shop');
    expect(verifyPeerCertificate(leafOf(issued.certChainPem), { trustDomain: 'mesh.test' })).toEqual({
      spiffeId: 'spiffe://mesh.test/ns/shop/sa/cart',
      trustDomain: 'mesh.test',
      namespace: 'shop',
      service: 'cart',
      notAfter: issued.notAfter,
    });
  });

  it('refuses another trust domain, a CA certificate, expired and not-yet-valid leaves, all as downstream errors', async () => {
    const issued = await pki.issue('cart', 'shop', { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() + HOUR) });
    const cert = leafOf(issued.certChainPem);
    const cases: [() => unknown, string][] = [
      [() => verifyPeerCertificate(cert, { trustDomain: 'other.test' }), 'TRELLIS_PEER_TRUST_DOMAIN'],
      [() => verifyPeerCertificate(new X509Certificate(pki.intermediate.certificatePem), { trustDomain: 'mesh.test' }), 'TRELLIS_PEER_IS_CA'],
      [() => verifyPeerCertificate(cert, { trustDomain: 'mesh.test', now: new Date(Date.now() + 2 * HOUR) }), 'TRELLIS_PEER_EXPIRED'],
      [() => verifyPeerCertificate(cert, { trustDomain: 'mesh.test', now: new Date(Date.now() - 3 * HOUR) }), 'TRELLIS_PEER_NOT_YET_VALID'],
    ];
    for (const [work, code] of cases) {
      const err = refusal(work);
      expect(err.code).toBe(code);
      expect(err.side).toBe('downstream');
    }
  });

  it('refuses a leaf whose URI SAN is not a workload ID, or that has none', async () => {
    const key = await generateWorkloadKey();
    const signer = importPrivateKeyPem(pki.intermediate.exportKeyPem());
    const profile = leafProfile(pki.intermediate.certificate.subjectName, keyIdentifier(pki.intermediate.certificate.spki));
    for (const uri of ['spiffe://mesh.test/just/a/path', 'https://mesh.test/ns/a/sa/b', 'spiffe://mesh.test']) {
      const der = signCertificate(leafTemplate(profile, uri, spkiDer(key.publicKey), new Date(Date.now() - HOUR), new Date(Date.now() + HOUR)), signer, signatureAlgorithmFor(signer));
      expect(refusal(() => verifyPeerCertificate(new X509Certificate(der), { trustDomain: 'mesh.test' })).code, uri).toBe('TRELLIS_PEER_NOT_SVID');
    }
  });
});

describe('verifyChain (offline path building and checks)', () => {
  let pki: TestPki;
  let foreign: TestPki;
  beforeAll(async () => {
    pki = await createTestPki({ trustDomain: 'mesh.test' });
    foreign = await createTestPki({ trustDomain: 'other.test' });
  });

  it('builds leaf → intermediate → root', async () => {
    const issued = await pki.issue('cart', 'shop');
    const verified = verifyChain(issued.certChainPem, pki.bundle);
    expect(verified.identity.spiffeId).toBe('spiffe://mesh.test/ns/shop/sa/cart');
    expect(verified.path.map((c) => c.der.equals(pki.root.certificate.der))).toEqual([false, false, true]);
  });

  it('refuses a chain from another trust domain', async () => {
    const intruder = await foreign.issue('cart', 'shop');
    expect(refusal(() => verifyChain(intruder.certChainPem, pki.bundle, { trustDomain: 'other.test' })).code).toBe('TRELLIS_CHAIN_UNTRUSTED');
    expect(refusal(() => verifyChain(intruder.certChainPem, pki.bundle)).code).toBe('TRELLIS_PEER_TRUST_DOMAIN');
  });

  it('refuses a chain missing its intermediate', async () => {
    const issued = await pki.issue('cart', 'shop');
    const leafOnly = certificatePem(parseCertificatesPem(issued.certChainPem, 'x')[0]?.der as Buffer);
    expect(refusal(() => verifyChain(leafOnly, pki.bundle)).code).toBe('TRELLIS_CHAIN_UNTRUSTED');
  });

  it('refuses a leaf presented as a CA (a leaf that signed another leaf)', async () => {
    const victim = await pki.issue('cart', 'shop');
    const leafCert = parseCertificatesPem(victim.certChainPem, 'x')[0];
    if (leafCert === undefined) throw new Error('no leaf');
    const leafKey = importPrivateKeyPem(victim.keyPem);
    const child = await generateWorkloadKey();
    // Its subject is empty, so the child's issuer name is empty too: the chain still links by name and signature.
    const der = signCertificate(
      leafTemplate(leafProfile(leafCert.subjectName, keyIdentifier(leafCert.spki)), 'spiffe://mesh.test/ns/shop/sa/admin', spkiDer(child.publicKey), new Date(Date.now() - HOUR), new Date(Date.now() + HOUR)),
      leafKey,
      signatureAlgorithmFor(leafKey),
    );
    const err = refusal(() => verifyChain(certificatePem(der) + victim.certChainPem, pki.bundle));
    expect(err.code).toBe('TRELLIS_CHAIN_ISSUER_NOT_CA');
    expect(err.message).toMatch(/not a CA/);
  });

  it('enforces pathLen: the zone intermediate (pathLen 0) cannot sign another CA', async () => {
    await expect(pki.intermediate.createIntermediate({ name: 'sub' })).rejects.toMatchObject({ code: 'TRELLIS_CA_PATH_LENGTH' });
    // Forge one anyway with the intermediate's key: verification must catch it.
    const intKey = importPrivateKeyPem(pki.intermediate.exportKeyPem());
    const subKey = await generateWorkloadKey();
    const subDer = signCertificate(
      caTemplate({
        subjectName: encodeName({ commonName: 'sub' }),
        issuerName: pki.intermediate.certificate.subjectName,
        issuerKeyId: keyIdentifier(pki.intermediate.certificate.spki),
        spki: spkiDer(subKey.publicKey),
        pathLen: 0,
        notBefore: new Date(Date.now() - HOUR),
        notAfter: new Date(Date.now() + HOUR),
        trustDomainUri: 'spiffe://mesh.test',
      }),
      intKey,
      signatureAlgorithmFor(intKey),
    );
    const subSubject = parseCertificatesPem(certificatePem(subDer), 'x')[0]?.subjectName as Buffer;
    const leafDer = signCertificate(
      leafTemplate(leafProfile(subSubject, keyIdentifier(spkiDer(subKey.publicKey))), 'spiffe://mesh.test/ns/a/sa/b', spkiDer((await generateWorkloadKey()).publicKey), new Date(Date.now() - HOUR), new Date(Date.now() + HOUR)),
      subKey.privateKey,
      signatureAlgorithmFor(subKey.privateKey),
    );
    const err = refusal(() => verifyChain(certificatePem(leafDer) + certificatePem(subDer) + pki.intermediate.certChainPem, pki.bundle));
    expect(err.code).toBe('TRELLIS_CHAIN_PATH_LENGTH');
  });

  it('refuses an expired or not-yet-valid issuer', async () => {
    let clock = new Date(Date.now() + 10 * HOUR);
    const root = await createRootCa({ trustDomain: 'mesh.test', notBefore: new Date(Date.now() - HOUR), now: () => clock });
    const late = await root.createIntermediate({ name: 'late', ttlMs: 24 * HOUR });
    // A leaf valid now under an intermediate that only starts in 10 hours.
    const issued = await late.issueWorkload(parseSpiffeId('spiffe://mesh.test/ns/a/sa/b'), { notBefore: new Date(Date.now() - HOUR) });
    expect(refusal(() => verifyChain(issued.certChainPem, root.bundle)).code).toBe('TRELLIS_CHAIN_NOT_YET_VALID');
    clock = new Date(Date.now() + 10 * HOUR);
    const shortLived = await root.createIntermediate({ name: 'short', ttlMs: HOUR });
    const leaf = await shortLived.issueWorkload(parseSpiffeId('spiffe://mesh.test/ns/a/sa/b'), { ttlMs: HOUR });
    expect(leaf.notAfter.getTime()).toBeLessThanOrEqual(shortLived.notAfter.getTime());
    const afterExpiry = new Date(shortLived.notAfter.getTime() + 1_000);
    // The leaf expires with its issuer (NotAfter clamped), so the leaf check speaks first.
    expect(refusal(() => verifyChain(leaf.certChainPem, root.bundle, { now: afterExpiry })).code).toBe('TRELLIS_PEER_EXPIRED');
  });

  it('refuses garbage PEM', () => {
    for (const garbage of ['', 'garbage', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', '-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n']) {
      const err = refusal(() => verifyChain(garbage, pki.bundle));
      expect(err.code, garbage).toMatch(/^TRELLIS_CHAIN_INVALID$/);
    }
  });
});
