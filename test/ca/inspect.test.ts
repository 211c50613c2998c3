import { beforeAll, describe, expect, it } from 'vitest';
import { certificatePem } from '../../ca/certificate.js';
import { generateWorkloadKey } from '../../ca/csr.js';
import { formatInspection, inspectCertificates } from '../../ca/inspect.js';
import { importPrivateKeyPem, signatureAlgorithmFor, spkiDer } from '../../ca/keys.js';
import { caTemplate, encodeName, keyIdentifier, signCertificate } from '../../ca/profile.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

const HOUR = 3_600_000;

describe('ca inspect report', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await createTestPki({ trustDomain: 'mesh.test' });
  });

  it('describes a healthy leaf and its chain', async () => {
    const issued = await pki.issue('cart', 'shop');
    const report = inspectCertificates(issued.certChainPem, { bundle: pki.bundle });
    expect(report.problems).toEqual([]);
    expect(report.chain?.verified).toBe(true);
    expect(report.certificates.map((c) => c.kind)).toEqual(['leaf', 'ca']);
    expect(report.certificates[0]).toMatchObject({ subject: '(empty)', spiffeIds: ['spiffe://mesh.test/ns/shop/sa/cart'], keyType: 'ECDSA P-256', keyUsage: ['digitalSignature'] });
    expect(formatInspection(report)).toContain('No problems found.');
  });

  it('reports an expired leaf and a not-yet-valid one', async () => {
    const expired = await pki.issue('cart', 'shop', { notBefore: new Date(Date.now() - 3 * HOUR), notAfter: new Date(Date.now() - HOUR) });
    const report = inspectCertificates(expired.certChainPem, { bundle: pki.bundle });
    expect(report.problems.join('\n')).toMatch(/certificate 1: expired 1h/);
    expect(report.chain?.verified).toBe(false);
    const future = await pki.issue('cart', 'shop', { notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 3 * HOUR) });
    expect(inspectCertificates(future.certChainPem).problems.join('\n')).toMatch(/not yet valid \(starts in (59m|1h)/);
  });

  it('reports a CA certificate used as a leaf (a CA carrying a workload ID)', async () => {
    const key = await generateWorkloadKey();
    const signer = importPrivateKeyPem(pki.root.exportKeyPem());
    const der = signCertificate(
      caTemplate({
        subjectName: encodeName({ commonName: 'sneaky' }),
        issuerName: pki.root.certificate.subjectName,
        issuerKeyId: keyIdentifier(pki.root.certificate.spki),
        spki: spkiDer(key.publicKey),
        pathLen: 0,
        notBefore: new Date(Date.now() - HOUR),
        notAfter: new Date(Date.now() + HOUR),
        trustDomainUri: 'spiffe://mesh.test/ns/shop/sa/cart',
      }),
      signer,
      signatureAlgorithmFor(signer),
    );
    const report = inspectCertificates(certificatePem(der));
    expect(report.problems.join('\n')).toMatch(/CA used as leaf/);
  });

  it('reports a leaf used as a CA in the chain, and a chain of another trust domain', async () => {
    const leaf = await pki.issue('cart', 'shop');
    const other = await pki.issue('db', 'shop');
    // A leaf followed by another leaf where its issuer should be.
    expect(inspectCertificates(leaf.certChainPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0] + other.certChainPem).problems.join('\n')).toMatch(/leaf used as CA/);
    const foreign = await (await createTestPki({ trustDomain: 'other.test' })).issue('cart', 'shop');
    const report = inspectCertificates(foreign.certChainPem, { bundle: pki.bundle });
    expect(report.chain?.verified).toBe(false);
    expect(report.problems.join('\n')).toMatch(/chain: .*other.test.*mesh.test/);
  });
});
